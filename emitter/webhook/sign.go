package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers every delivery carries.
const (
	// HeaderID is the event's stable id, "evt_<seq>": the same on every
	// retry and after a restart, so receivers use it as an idempotency key.
	HeaderID = "webhook-id"
	// HeaderTimestamp is the time of the attempt in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature is a space-separated list of "v1,<base64 HMAC-SHA256>".
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret: a secret is "whsec_" followed by the
// standard base64 encoding of the key.
const SecretPrefix = "whsec_"

// MinSecretBytes is the shortest key accepted: Standard Webhooks asks for
// at least 24 random bytes (192 bits).
const MinSecretBytes = 24

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's
// clock, either way, when Verify is given a tolerance of 0.
const DefaultTolerance = 5 * time.Minute

// The kinds of error Sign, Verify and New report. Each error returned wraps
// one of them and says what was wrong.
var (
	// ErrSecret: the secret is not "whsec_" + base64 of at least
	// MinSecretBytes bytes.
	ErrSecret = errors.New("webhook: invalid secret")
	// ErrMissingHeaders: webhook-id, webhook-timestamp or
	// webhook-signature is absent or empty.
	ErrMissingHeaders = errors.New("webhook: missing headers")
	// ErrTimestamp: webhook-timestamp is not Unix seconds, or is further
	// from now than the tolerance (a replay, or a skewed clock).
	ErrTimestamp = errors.New("webhook: bad timestamp")
	// ErrSignature: no v1 signature in webhook-signature matches the body.
	ErrSignature = errors.New("webhook: no matching signature")
)

// parseSecret decodes a "whsec_…" secret into its HMAC key.
func parseSecret(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want the %q prefix (make one with NewSecret)", ErrSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: the part after %q is not standard base64: %v", ErrSecret, SecretPrefix, err)
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("%w: key is %d bytes, want at least %d", ErrSecret, len(key), MinSecretBytes)
	}
	return key, nil
}

// NewSecret returns a new random secret: "whsec_" and the base64 of 24
// bytes from crypto/rand. The error is always nil (crypto/rand does not
// fail on the platforms Go supports); it is there for callers that treat
// secret generation as fallible.
func NewSecret() (string, error) {
	key := make([]byte, MinSecretBytes)
	_, _ = rand.Read(key) // never returns an error since Go 1.24
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// Sign returns the webhook-signature header value for one delivery:
// "v1," + base64(HMAC-SHA256(key, id + "." + unix(ts) + "." + body)), the
// Standard Webhooks symmetric scheme. The error is non-nil (ErrSecret) only
// for a bad secret.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := parseSecret(secret)
	if err != nil {
		return "", err
	}
	return string(appendSignature(nil, key, id, ts.Unix(), body)), nil
}

// appendSignature appends "v1,<base64 MAC>" to dst.
func appendSignature(dst, key []byte, id string, unix int64, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	var buf [20]byte
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(buf[:0], unix, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	var sum [sha256.Size]byte
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, mac.Sum(sum[:0]))
}

// Verify checks a received webhook, for receivers written in Go: header
// holds the request's headers and body its raw bytes, exactly as received
// (verify before parsing the JSON, never a re-encoding of it).
//
// It returns nil when the three Standard Webhooks headers are present,
// webhook-timestamp is within tolerance of now (either way; a tolerance of
// 0 means DefaultTolerance), and one of the space-separated signatures in
// webhook-signature is a v1 signature of the id, timestamp and body under
// secret, compared in constant time. Signatures of other versions (v1a…)
// are skipped, so a header signed with several keys during a rotation
// verifies with any one of them.
//
// Errors wrap ErrSecret, ErrMissingHeaders, ErrTimestamp or ErrSignature
// and say which header or value was wrong.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := parseSecret(secret)
	if err != nil {
		return err
	}
	id := header.Get(HeaderID)
	tsText := header.Get(HeaderTimestamp)
	sigs := header.Get(HeaderSignature)
	var missing []string
	for _, h := range []struct{ name, value string }{
		{HeaderID, id}, {HeaderTimestamp, tsText}, {HeaderSignature, sigs},
	} {
		if h.value == "" {
			missing = append(missing, h.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	unix, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix seconds", ErrTimestamp, HeaderTimestamp, tsText)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compare in seconds, so that a sub-second now does not reject a
	// timestamp exactly tolerance away.
	switch skew := now.Unix() - unix; {
	case skew > int64(tolerance/time.Second):
		return fmt.Errorf("%w: %s is %ds old, more than the tolerance %v", ErrTimestamp, HeaderTimestamp, skew, tolerance)
	case -skew > int64(tolerance/time.Second):
		return fmt.Errorf("%w: %s is %ds in the future, more than the tolerance %v", ErrTimestamp, HeaderTimestamp, -skew, tolerance)
	}
	want := appendSignature(make([]byte, 0, 64), key, id, unix, body)
	for sig := range strings.FieldsSeq(sigs) {
		if hmac.Equal([]byte(sig), want) { // want starts with "v1,": other versions never match
			return nil
		}
	}
	return fmt.Errorf("%w: none of the %s values is a v1 signature of this id, timestamp and body", ErrSignature, HeaderSignature)
}
