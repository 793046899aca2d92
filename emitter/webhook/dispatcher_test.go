package webhook

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDeliversEveryEventSignedAndInOrderPerCall(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, callRange(1, 40), 3) // before Run: the backlog
	rc := newReceiver(t, nil)
	d := start(t, testConfig(t, rc.URL(), l), nil)

	appendCalls(t, l, callRange(1, 40), 2) // while running: the tail
	const total = 200
	rc.await(t, "all 200 events", allDelivered(1, total))
	if _, err := d.stop(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}

	arrived, _, _ := rc.snapshot()
	checkOrderPerCall(t, arrived)
	for _, r := range arrived {
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type %q", r.id, got)
		}
		if got := r.header.Get("User-Agent"); got != "callfsm-webhook/1" {
			t.Errorf("%s: User-Agent %q", r.id, got)
		}
		ev := l.record(r.seq).Event
		if want := ev.AppendJSON(nil); string(r.body) != string(want) {
			t.Errorf("%s: body\n%s\nwant the seed payload\n%s", r.id, r.body, want)
		}
	}
	if got := d.Cursor(); got != total+1 {
		t.Errorf("Cursor = %d, want %d", got, total+1)
	}
	if got := d.Pending(); got != 0 {
		t.Errorf("Pending = %d, want 0", got)
	}
	if got, _ := os.ReadFile(d.cfg.CursorPath); string(got) != "201\n" {
		t.Errorf("cursor file holds %q, want %q", got, "201\n")
	}
	if _, err := os.Stat(d.cfg.DeadLetterPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead-letter file exists (%v), want none", err)
	}
}

func TestACallWaitsForItsPreviousEventWhileOthersProceed(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, callRange(1, 6), 2) // call 1: evt_1 and evt_7
	release := make(chan struct{})
	rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, req request, _ int) answer {
		if req.seq == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return answer{status: http.StatusNoContent}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.Parallel = 2
	start(t, cfg, nil)

	others := func(sn *seen) bool {
		for s := uint64(2); s <= 12; s++ {
			if s != 7 && !sn.delivered[s] {
				return false
			}
		}
		return true
	}
	rc.await(t, "the other calls' events, while call 1 is blocked", others)
	arrived, _, _ := rc.snapshot()
	for _, r := range arrived {
		if r.seq == 7 {
			t.Fatalf("evt_7 (call 1's second event) was sent while evt_1 was not answered")
		}
	}
	close(release)
	rc.await(t, "call 1's events", allDelivered(1, 12))
	arrived, _, _ = rc.snapshot()
	checkOrderPerCall(t, arrived)
}

func TestRetriesNetworkErrors5xx408And429(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		fail   func(w http.ResponseWriter) answer
		reason string
	}{
		{"500", func(http.ResponseWriter) answer { return answer{status: 500} }, reasonStatus5xx},
		{"502", func(http.ResponseWriter) answer { return answer{status: 502} }, reasonStatus5xx},
		{"503", func(http.ResponseWriter) answer { return answer{status: 503} }, reasonStatus5xx},
		{"408", func(http.ResponseWriter) answer { return answer{status: 408} }, reasonStatus408},
		{"429", func(http.ResponseWriter) answer { return answer{status: 429} }, reasonStatus429},
		{"connection closed without a response", func(w http.ResponseWriter) answer {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return answer{status: 599} // not sent
		}, reasonNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newMemLog()
			appendCalls(t, l, []int64{7}, 1)
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ request, n int) answer {
				if n <= 2 {
					return tt.fail(w)
				}
				return answer{status: 200}
			})
			var s sleeps
			d := start(t, testConfig(t, rc.URL(), l), func(d *Dispatcher) { d.sleep = s.sleep })
			rc.await(t, "evt_1", allDelivered(1, 1))
			if _, err := d.stop(context.Background()); err != nil {
				t.Fatal(err)
			}

			arrived, _, _ := rc.snapshot()
			if len(arrived) != 3 {
				t.Fatalf("%d requests, want 3 (two failures, then the delivery)", len(arrived))
			}
			for _, r := range arrived {
				if r.id != "evt_1" || string(r.body) != string(arrived[0].body) {
					t.Errorf("retry %s with body %s, want evt_1 and the same body", r.id, r.body)
				}
			}
			if got := len(s.waits()); got != 2 {
				t.Errorf("%d backoff waits, want 2", got)
			}
			if got := d.Cursor(); got != 2 {
				t.Errorf("Cursor = %d, want 2", got)
			}
			for _, reason := range failureReasons {
				want := 0.0
				if reason == tt.reason {
					want = 2
				}
				if got := counterValue(t, d.m.failures.WithLabelValues(reason)); got != want {
					t.Errorf("failures{reason=%q} = %v, want %v", reason, got, want)
				}
			}
		})
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter func() string
		min, max   time.Duration
	}{
		{"seconds", 429, func() string { return "7" }, 7 * time.Second, 7 * time.Second},
		{"seconds on a 503", 503, func() string { return "2" }, 2 * time.Second, 2 * time.Second},
		{"HTTP-date", 429, func() string { return time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat) }, 28 * time.Second, 30 * time.Second},
		{"capped by MaxBackoff", 429, func() string { return "86400" }, time.Minute, time.Minute},
		{"a date in the past: no wait", 429, func() string { return "Wed, 21 Oct 2015 07:28:00 GMT" }, 0, 0},
		{"unparsable: the backoff", 429, func() string { return "soon" }, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newMemLog()
			appendCalls(t, l, []int64{7}, 1)
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ request, n int) answer {
				if n == 1 {
					w.Header().Set("Retry-After", tt.retryAfter())
					return answer{status: tt.status}
				}
				return answer{status: 200}
			})
			cfg := testConfig(t, rc.URL(), l)
			cfg.BaseBackoff, cfg.MaxBackoff = time.Second, time.Minute
			var s sleeps
			d := start(t, cfg, func(d *Dispatcher) {
				d.sleep = s.sleep
				d.jitter = func(n int64) int64 { return n }
			})
			rc.await(t, "evt_1", allDelivered(1, 1))
			_, _ = d.stop(context.Background())
			waits := s.waits()
			if len(waits) != 1 || waits[0] < tt.min || waits[0] > tt.max {
				t.Errorf("waited %v, want one wait in [%v, %v]", waits, tt.min, tt.max)
			}
		})
	}
}

func TestBackoffIsExponentialWithFullJitterUpToMaxBackoff(t *testing.T) {
	t.Parallel()
	d, err := New(testConfig(t, "http://127.0.0.1:1/", newMemLog()))
	if err != nil {
		t.Fatal(err)
	}
	d.baseBackoff, d.maxBackoff = 100*time.Millisecond, time.Second
	d.jitter = func(n int64) int64 { return n } // the ceiling
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, d.backoff(n))
	}
	ms := time.Millisecond
	if want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}; !slices.Equal(got, want) {
		t.Errorf("ceilings %v, want %v", got, want)
	}
	for _, n := range []int{63, 64, 100, 1 << 20} {
		if got := d.backoff(n); got != time.Second {
			t.Errorf("backoff(%d) = %v, want MaxBackoff (no overflow)", n, got)
		}
	}
	// 5ns<<62 overflows to 1<<62, which is below this MaxBackoff.
	d.baseBackoff, d.maxBackoff = 5, math.MaxInt64
	if got := d.backoff(63); got != math.MaxInt64 {
		t.Errorf("backoff(63) with BaseBackoff 5ns = %v, want MaxBackoff (the shift overflowed)", got)
	}

	d2, _ := New(testConfig(t, "http://127.0.0.1:1/", newMemLog()))
	seen := make(map[time.Duration]bool)
	for range 200 {
		w := d2.backoff(3) // ceiling 4×500ms = 2s
		if w < 0 || w > 2*time.Second {
			t.Fatalf("backoff(3) = %v, want within [0, 2s]", w)
		}
		seen[w] = true
	}
	if len(seen) < 100 {
		t.Errorf("200 backoffs took %d values: no jitter?", len(seen))
	}
}

// deadLetters reads the dead-letter file.
func deadLetters(t *testing.T, path string) []DeadLetter {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []DeadLetter
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var dl DeadLetter
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&dl); err != nil {
			t.Fatalf("dead-letter line %s: %v", sc.Text(), err)
		}
		out = append(out, dl)
	}
	return out
}

func TestOther4xxAndRedirectsAreDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status     int
		body       string
		wantReason string
		class      string
	}{
		{400, `{"error":"unknown call"}`, `status 400 Bad Request: {"error":"unknown call"}`, reasonStatus4xx},
		{404, "", "status 404 Not Found", reasonStatus4xx},
		{410, "gone\r\nfor good", "status 410 Gone: gone  for good", reasonStatus4xx},
		{413, strings.Repeat("x", 1000), "status 413 Request Entity Too Large: " + strings.Repeat("x", snippetBytes), reasonStatus4xx},
		{301, "", "status 301 Moved Permanently", reasonStatus3xx},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			l := newMemLog()
			appendCalls(t, l, []int64{7}, 2) // evt_1 fails, evt_2 follows it
			rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, req request, _ int) answer {
				if req.seq == 1 {
					w.Header().Set("Location", "/elsewhere")
					return answer{status: tt.status, body: tt.body}
				}
				return answer{status: 200}
			})
			cfg := testConfig(t, rc.URL(), l)
			before := time.Now().UTC()
			d := start(t, cfg, nil)
			rc.await(t, "evt_2", allDelivered(2, 2))
			if _, err := d.stop(context.Background()); err != nil {
				t.Fatal(err)
			}

			arrived, _, _ := rc.snapshot()
			var seqs []uint64
			for _, r := range arrived {
				seqs = append(seqs, r.seq)
			}
			if !slices.Equal(seqs, []uint64{1, 2}) {
				t.Errorf("requests for %v, want [1 2]: one attempt for evt_1, then evt_2", seqs)
			}
			dls := deadLetters(t, cfg.DeadLetterPath)
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			ev := l.record(1).Event
			want := DeadLetter{
				WebhookID: "evt_1", URL: rc.srv.URL + "/hooks/callfsm", Seq: 1, CallID: 7,
				Event: ev.Event, Attempts: 1, Reason: tt.wantReason, At: dl.At,
				Payload: ev.AppendJSON(nil),
			}
			if got, _ := json.Marshal(dl); string(got) != string(mustJSON(t, want)) {
				t.Errorf("dead letter\n%s\nwant\n%s", got, mustJSON(t, want))
			}
			if dl.At.Before(before.Add(-time.Second)) || dl.At.After(time.Now().Add(time.Second)) {
				t.Errorf("dead letter at %v, want about now", dl.At)
			}
			if fi, err := os.Stat(cfg.DeadLetterPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("dead-letter file mode %v (%v), want 0600", fi.Mode().Perm(), err)
			}
			if got := d.Cursor(); got != 3 {
				t.Errorf("Cursor = %d, want 3: the dead letter counts as finished", got)
			}
			if got := counterValue(t, d.m.deliveries.WithLabelValues(resultDeadLettered)); got != 1 {
				t.Errorf("deliveries{dead_lettered} = %v, want 1", got)
			}
			if got := counterValue(t, d.m.failures.WithLabelValues(tt.class)); got != 1 {
				t.Errorf("failures{%s} = %v, want 1", tt.class, got)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeadLetteredAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{7}, 2)
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, req request, _ int) answer {
		if req.seq == 1 {
			return answer{status: 503, body: "busy"}
		}
		return answer{status: 200}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.MaxAttempts = 4
	var s sleeps
	d := start(t, cfg, func(d *Dispatcher) { d.sleep = s.sleep })
	rc.await(t, "evt_2", allDelivered(2, 2))
	_, _ = d.stop(context.Background())

	arrived, _, _ := rc.snapshot()
	if n := len(arrived); n != 5 {
		t.Errorf("%d requests, want 4 attempts at evt_1 and 1 at evt_2", n)
	}
	dls := deadLetters(t, cfg.DeadLetterPath)
	if len(dls) != 1 || dls[0].Attempts != 4 || dls[0].Reason != "status 503 Service Unavailable: busy" {
		t.Errorf("dead letters %+v, want one for evt_1 after 4 attempts, reason 503 busy", dls)
	}
	if got := len(s.waits()); got != 3 {
		t.Errorf("%d backoff waits, want 3 (between 4 attempts)", got)
	}
}

func TestConnectionRefusedIsRetriedUntilTheReceiverComesBack(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused

	l := newMemLog()
	appendCalls(t, l, []int64{7}, 1)
	var (
		mu  sync.Mutex
		srv *httptest.Server
		got = make(chan string, 1)
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if srv != nil {
			srv.Close()
		}
	})
	var s sleeps
	cfg := testConfig(t, "http://"+addr+"/hook", l)
	d := start(t, cfg, func(d *Dispatcher) {
		d.sleep = func(ctx context.Context, dur time.Duration) error {
			_ = s.sleep(ctx, dur)
			if len(s.waits()) == 2 { // after the second refusal, the receiver comes back
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("listening again on %s: %v", addr, err)
					return err
				}
				mu.Lock()
				srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					got <- r.Header.Get(HeaderID)
				}))
				srv.Listener.Close()
				srv.Listener = ln
				srv.Start()
				mu.Unlock()
			}
			return ctx.Err()
		}
	})
	select {
	case id := <-got:
		if id != "evt_1" {
			t.Errorf("received %s, want evt_1", id)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("evt_1 never arrived")
	}
	_, _ = d.stop(context.Background())
	if got := counterValue(t, d.m.failures.WithLabelValues(reasonNetwork)); got != 2 {
		t.Errorf("failures{network} = %v, want 2", got)
	}
	if got := counterValue(t, d.m.attempts); got != 3 {
		t.Errorf("attempts = %v, want 3", got)
	}
	if d.Cursor() != 2 {
		t.Errorf("Cursor = %d, want 2", d.Cursor())
	}
}

func TestAReceiverThatStaysDownIsDeadLetteredWithTheNetworkError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := newMemLog()
	appendCalls(t, l, []int64{7}, 1)
	cfg := testConfig(t, "http://"+addr+"/hook?token=s3cret", l)
	cfg.MaxAttempts = 3
	logs := newLogSink()
	cfg.Logger = slog.New(logs)
	var s sleeps
	d := start(t, cfg, func(d *Dispatcher) { d.sleep = s.sleep })
	logs.await(t, "webhook: event dead-lettered")
	_, _ = d.stop(context.Background())
	if got := logs.attr("webhook: event dead-lettered", "url"); got != "http://"+addr+"/hook" {
		t.Errorf("the log names the URL %q, want it without its query", got)
	}
	dls := deadLetters(t, cfg.DeadLetterPath)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if dl := dls[0]; dl.Attempts != 3 || !strings.HasPrefix(dl.Reason, "network: ") || !strings.Contains(dl.Reason, "refused") {
		t.Errorf("dead letter %+v, want 3 attempts and a network reason naming the refusal", dl)
	}
	if dl := dls[0]; strings.Contains(dl.URL+dl.Reason, "s3cret") {
		t.Errorf("dead letter %+v shows the URL's query", dl)
	}
}
