package webhook

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Receivers that misbehave for real, over loopback, with many calls
// interleaved in the log and the real backoff (made tiny): what
// TestRetriesNetworkErrors5xx408And429 and
// TestConnectionRefusedIsRetriedUntilTheReceiverComesBack show for one
// event, these show for hundreds delivered in parallel.

// chaosConfig is testConfig with real, tiny backoff waits and enough
// attempts that no event is dead-lettered by bad luck.
func chaosConfig(t *testing.T, url string, l *memLog) Config {
	cfg := testConfig(t, url, l)
	cfg.BaseBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	cfg.MaxAttempts = 1000
	return cfg
}

// everyEventOrDeadLetter is an await condition: every seq in [1, total]
// delivered, or a dead letter (which fails the test without waiting for
// events that will never come).
func everyEventOrDeadLetter(d *Dispatcher, total uint64) func(s *seen) bool {
	all := allDelivered(1, total)
	return func(s *seen) bool {
		return all(s) || testutil.ToFloat64(d.m.deliveries.WithLabelValues(resultDeadLettered)) > 0
	}
}

// checkChaos checks what a receiver saw once every event of l was
// delivered: no dead letter, every request signed and carrying its seed
// payload, every call's events sent in log order, and each call's events
// delivered for the first time in log order.
func checkChaos(t *testing.T, d *Dispatcher, l *memLog, rc *receiver) {
	t.Helper()
	total := l.LastSeq()
	if dls := deadLetters(t, d.cfg.DeadLetterPath); len(dls) != 0 {
		t.Fatalf("%d dead letters, the first %s after %d attempts: %s; want every event delivered",
			len(dls), dls[0].WebhookID, dls[0].Attempts, dls[0].Reason)
	}
	if got := d.Cursor(); got != total+1 {
		t.Errorf("Cursor = %d, want %d", got, total+1)
	}
	arrived, done, delivered := rc.snapshot()
	if uint64(len(delivered)) != total {
		t.Errorf("%d events delivered, want %d", len(delivered), total)
	}
	for _, r := range arrived {
		if err := Verify(testSecret, r.header, r.body, time.Minute, time.Now()); err != nil {
			t.Errorf("%s: %v", r.id, err)
		}
		ev := l.record(r.seq).Event
		if want := ev.AppendJSON(nil); string(r.body) != string(want) {
			t.Errorf("%s: body %s, want the seed payload %s", r.id, r.body, want)
		}
	}
	checkOrderPerCall(t, arrived)

	// The first 2xx of each event, in the order the answers were written.
	firsts := make(map[int64][]uint64) // call → seqs
	first := make(map[uint64]bool)
	for _, r := range done {
		if r.status/100 == 2 && !r.canceled && !first[r.seq] {
			first[r.seq] = true
			firsts[r.callID] = append(firsts[r.callID], r.seq)
		}
	}
	want := make(map[int64][]uint64)
	for s := uint64(1); s <= total; s++ {
		c := l.record(s).Event.CallID
		want[c] = append(want[c], s)
	}
	for c, seqs := range want {
		if !slices.Equal(firsts[c], seqs) {
			t.Errorf("call %d: first deliveries of %v, want %v (the log's order)", c, firsts[c], seqs)
		}
	}
}

// A receiver that fails half its requests at random, a quarter with a 500
// and a quarter by dropping the connection without an answer.
func TestAFlakyReceiverGetsEveryEventInOrderPerCall(t *testing.T) {
	t.Parallel()
	const calls, perCall = 80, 5
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var (
		mu  sync.Mutex
		rng = rand.New(rand.NewPCG(seed, seed))
	)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ request, _ int) answer {
		mu.Lock()
		roll := rng.IntN(4)
		mu.Unlock()
		switch roll {
		case 0:
			return answer{status: http.StatusInternalServerError, body: "flaky"}
		case 1:
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return answer{status: 599} // never sent: the connection is gone
		}
		return answer{status: http.StatusOK}
	})

	l := newMemLog()
	appendCalls(t, l, callRange(1, calls/2), perCall) // a backlog
	d := start(t, chaosConfig(t, rc.URL(), l), nil)
	appendCalls(t, l, callRange(calls/2+1, calls/2), perCall) // and a tail, while running
	rc.await(t, "every event, or a dead letter", everyEventOrDeadLetter(d.Dispatcher, calls*perCall))
	if _, err := d.stop(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}

	checkChaos(t, d.Dispatcher, l, rc)
	// Both kinds of failure happened, and were retried.
	network := counterValue(t, d.m.failures.WithLabelValues(reasonNetwork))
	status5xx := counterValue(t, d.m.failures.WithLabelValues(reasonStatus5xx))
	attempts := counterValue(t, d.m.attempts)
	t.Logf("%v attempts for %d events: %v dropped connections, %v 500s", attempts, calls*perCall, network, status5xx)
	if network == 0 || status5xx == 0 {
		t.Errorf("failures: %v network, %v 5xx; want both kinds", network, status5xx)
	}
	if attempts != float64(calls*perCall)+network+status5xx {
		t.Errorf("%v attempts, want one per event plus one per failure (%v)", attempts, float64(calls*perCall)+network+status5xx)
	}
	if arrived, _, _ := rc.snapshot(); float64(len(arrived)) != attempts {
		t.Errorf("the receiver saw %d requests, the dispatcher made %v", len(arrived), attempts)
	}
}

// A receiver that goes down (its listener closed, its connections cut)
// while events are being delivered, stays down while more are appended and
// retries pile up, then comes back on the same port.
func TestAReceiverDownForAWhileGetsEveryEventWhenItComesBack(t *testing.T) {
	t.Parallel()
	const calls, perCall, downFailures = 80, 5, 40
	rc := newReceiver(t, nil)
	addr := rc.srv.Listener.Addr().String()
	logs := newLogSink()

	l := newMemLog()
	appendCalls(t, l, callRange(1, calls/2), perCall)
	cfg := chaosConfig(t, rc.URL(), l)
	cfg.Logger = slog.New(logs)
	d := start(t, cfg, nil)
	rc.await(t, "the first events", func(s *seen) bool { return len(s.delivered) >= 50 })

	rc.srv.Close() // down: waits for the requests in progress, closes every connection
	before, _, _ := rc.snapshot()
	appendCalls(t, l, callRange(calls/2+1, calls/2), perCall) // appended while down
	logs.awaitRecords(t, "retries while the receiver is down, or a dead letter", func(recs []slog.Record) bool {
		retries := 0
		for _, r := range recs {
			switch r.Message {
			case "webhook: attempt failed; retrying":
				retries++
			case "webhook: event dead-lettered":
				return true
			}
		}
		return retries >= downFailures
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	back := httptest.NewUnstartedServer(rc)
	back.Listener.Close()
	back.Listener = ln
	back.Start()
	t.Cleanup(back.Close)

	rc.await(t, "every event, or a dead letter", everyEventOrDeadLetter(d.Dispatcher, calls*perCall))
	if _, err := d.stop(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}

	checkChaos(t, d.Dispatcher, l, rc)
	if n := uint64(len(before)); n >= calls*perCall/2 {
		t.Errorf("%d requests before the receiver went down, want it down mid-delivery (fewer than %d)", n, calls*perCall/2)
	}
	network := counterValue(t, d.m.failures.WithLabelValues(reasonNetwork))
	if network < downFailures {
		t.Errorf("%v network failures, want at least %d while the receiver was down", network, downFailures)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, r := range logs.recs {
		if r.Message != "webhook: attempt failed; retrying" {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" && !strings.HasPrefix(a.Value.String(), "network: ") {
				t.Errorf("a retry for %q, want only network failures", a.Value.String())
			}
			return true
		})
	}
}

// awaitRecords waits until cond holds for the records logged so far.
func (s *logSink) awaitRecords(t *testing.T, what string, cond func([]slog.Record) bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s.recs)
		n, changed := len(s.recs), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("gave up waiting for %s: %d records logged", what, n)
		}
	}
}
