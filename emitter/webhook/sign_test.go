package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks test vector, from the reference libraries' tests.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorUnix   = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesTheStandardWebhooksVector(t *testing.T) {
	got, err := Sign(vectorSecret, vectorID, time.Unix(vectorUnix, 0), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSig {
		t.Errorf("Sign = %s, want %s", got, vectorSig)
	}
}

func vectorHeader() http.Header {
	h := http.Header{}
	h.Set(HeaderID, vectorID)
	h.Set(HeaderTimestamp, strconv.Itoa(vectorUnix))
	h.Set(HeaderSignature, vectorSig)
	return h
}

func TestVerify(t *testing.T) {
	sent := time.Unix(vectorUnix, 0)
	other, _ := NewSecret()
	otherSig, _ := Sign(other, vectorID, sent, []byte(vectorBody))
	tests := []struct {
		name      string
		secret    string
		edit      func(h http.Header)
		body      string
		tolerance time.Duration
		now       time.Time
		want      error // nil, or the kind
	}{
		{name: "the vector", now: sent},
		{name: "within tolerance, after", now: sent.Add(5 * time.Minute)},
		{name: "within tolerance, before (receiver's clock behind)", now: sent.Add(-5 * time.Minute)},
		{name: "zero tolerance means 5 minutes", tolerance: -1, now: sent.Add(4 * time.Minute)},
		{name: "custom tolerance", tolerance: time.Hour, now: sent.Add(59 * time.Minute)},
		{name: "several signatures, one valid", now: sent, edit: func(h http.Header) {
			h.Set(HeaderSignature, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,"+vectorSig[3:]+" "+otherSig+"  "+vectorSig)
		}},
		{name: "the right MAC under another version", now: sent, edit: func(h http.Header) {
			h.Set(HeaderSignature, "v2,"+vectorSig[3:])
		}, want: ErrSignature},
		{name: "signed with another secret", now: sent, edit: func(h http.Header) { h.Set(HeaderSignature, otherSig) }, want: ErrSignature},
		{name: "tampered body", body: `{"test": 2432232315}`, now: sent, want: ErrSignature},
		{name: "re-encoded body", body: `{"test":2432232314}`, now: sent, want: ErrSignature},
		{name: "tampered id", now: sent, edit: func(h http.Header) { h.Set(HeaderID, vectorID+"x") }, want: ErrSignature},
		{name: "tampered timestamp", now: sent, edit: func(h http.Header) { h.Set(HeaderTimestamp, strconv.Itoa(vectorUnix+1)) }, want: ErrSignature},
		{name: "garbage signature", now: sent, edit: func(h http.Header) { h.Set(HeaderSignature, "v1,") }, want: ErrSignature},
		{name: "old timestamp", now: sent.Add(5*time.Minute + time.Second), want: ErrTimestamp},
		{name: "future timestamp", now: sent.Add(-5*time.Minute - time.Second), want: ErrTimestamp},
		{name: "timestamp not a number", now: sent, edit: func(h http.Header) { h.Set(HeaderTimestamp, "2021-02-25T15:02:10Z") }, want: ErrTimestamp},
		{name: "timestamp in milliseconds", now: sent, edit: func(h http.Header) { h.Set(HeaderTimestamp, strconv.Itoa(vectorUnix*1000)) }, want: ErrTimestamp},
		{name: "no id", now: sent, edit: func(h http.Header) { h.Del(HeaderID) }, want: ErrMissingHeaders},
		{name: "no timestamp", now: sent, edit: func(h http.Header) { h.Del(HeaderTimestamp) }, want: ErrMissingHeaders},
		{name: "no signature", now: sent, edit: func(h http.Header) { h.Del(HeaderSignature) }, want: ErrMissingHeaders},
		{name: "empty signature", now: sent, edit: func(h http.Header) { h.Set(HeaderSignature, "") }, want: ErrMissingHeaders},
		{name: "secret without prefix", secret: vectorSecret[len(SecretPrefix):], now: sent, want: ErrSecret},
		{name: "secret not base64", secret: "whsec_not base64!", now: sent, want: ErrSecret},
		{name: "secret too short", secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("short")), now: sent, want: ErrSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, body, tol := vectorSecret, vectorBody, 5*time.Minute
			if tt.secret != "" {
				secret = tt.secret
			}
			if tt.body != "" {
				body = tt.body
			}
			if tt.tolerance != 0 {
				tol = max(tt.tolerance, 0)
			}
			h := vectorHeader()
			if tt.edit != nil {
				tt.edit(h)
			}
			err := Verify(secret, h, []byte(body), tol, tt.now)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify = %v, want nil", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyErrorsSayWhatIsWrong(t *testing.T) {
	sent := time.Unix(vectorUnix, 0)
	h := vectorHeader()
	h.Del(HeaderID)
	h.Del(HeaderSignature)
	err := Verify(vectorSecret, h, []byte(vectorBody), time.Minute, sent)
	if got := err.Error(); !strings.Contains(got, "webhook-id, webhook-signature") {
		t.Errorf("missing headers: %q does not name both headers", got)
	}
	err = Verify(vectorSecret, vectorHeader(), []byte(vectorBody), time.Minute, sent.Add(time.Hour))
	if got := err.Error(); !strings.Contains(got, "3600s old") {
		t.Errorf("old timestamp: %q does not say how old", got)
	}
	err = Verify("whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 10)), vectorHeader(), nil, 0, sent)
	if got := err.Error(); !strings.Contains(got, "10 bytes, want at least 24") {
		t.Errorf("short secret: %q does not give the sizes", got)
	}
}

func TestSignRejectsBadSecrets(t *testing.T) {
	for _, secret := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_%%%%", "whsec_c2hvcnQ="} {
		if _, err := Sign(secret, "evt_1", time.Unix(0, 0), nil); !errors.Is(err, ErrSecret) {
			t.Errorf("Sign(secret %q) error = %v, want ErrSecret", secret, err)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b {
		t.Errorf("two secrets are equal: %s", a)
	}
	key, err := parseSecret(a)
	if err != nil {
		t.Fatalf("NewSecret made %q, which parseSecret rejects: %v", a, err)
	}
	if len(key) != 24 || !strings.HasPrefix(a, "whsec_") {
		t.Errorf("NewSecret = %q (%d-byte key), want whsec_ and 24 bytes", a, len(key))
	}
	now := time.Now()
	sig, err := Sign(a, "evt_9", now, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderID, "evt_9")
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, sig)
	if err := Verify(a, h, []byte("{}"), 0, now); err != nil {
		t.Errorf("round trip with a new secret: %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	key, _ := parseSecret(vectorSecret)
	body := make([]byte, 400)
	b.ReportAllocs()
	for b.Loop() {
		_ = appendSignature(make([]byte, 0, 48), key, "evt_123456", vectorUnix, body)
	}
}
