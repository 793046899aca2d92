package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memLog is the in-memory eventlog.Memory with a lookup by seq for tests.
type memLog struct{ *eventlog.Memory }

func newMemLog() *memLog { return &memLog{eventlog.NewMemory()} }

func (l *memLog) record(seq uint64) eventlog.Record {
	recs, err := l.Read(context.Background(), seq, 1)
	if err != nil || len(recs) != 1 {
		panic(fmt.Sprintf("memLog: no record %d: %v", seq, err))
	}
	return recs[0]
}

var steps = []string{"initiated", "ringing", "accepted", "started", "successful"}

func testEvent(callID int64, step int) event.Event {
	return event.Event{
		Event:     "popin_outgoing_call_" + steps[step%len(steps)],
		SessionID: fmt.Sprintf("session-%d", callID),
		UserID:    58559,
		CallID:    callID,
		Agent:     event.AgentInfo{Name: "Sasha", Email: "sasha@example.com"},
		User:      event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta:      event.Meta{Product: event.Product{Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/p"}},
		Timestamp: time.Now().Unix(),
	}
}

// appendCalls appends perCall events for each call in calls, interleaved:
// the first event of every call, then the second…
func appendCalls(t *testing.T, l *memLog, calls []int64, perCall int) {
	t.Helper()
	for step := range perCall {
		for _, c := range calls {
			if _, err := l.Append(context.Background(), testEvent(c, step)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func callRange(from, n int64) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = from + int64(i)
	}
	return ids
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// request is what a receiver saw.
type request struct {
	id       string
	seq      uint64
	callID   int64
	header   http.Header
	body     []byte
	status   int  // what the receiver answered
	canceled bool // the sender gave up before the answer
}

// answer is what a receiver replies: a status and a body. respond may set
// headers on w, but not write.
type answer struct {
	status int
	body   string
}

// respondFunc decides a receiver's answer. It may block. n counts the
// requests with this webhook-id, this one included.
type respondFunc func(w http.ResponseWriter, r *http.Request, req request, n int) answer

// receiver is a webhook receiver on loopback. It verifies every request
// with Verify and answers with what respond says (200 if nil).
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	respond respondFunc

	mu      sync.Mutex
	seen    seen
	changed chan struct{}
}

// seen is what a receiver has seen so far.
type seen struct {
	arrived   []request       // in arrival order
	done      []request       // answered, in the order the answers were written
	delivered map[uint64]bool // seqs answered 2xx to a sender still there
	count     map[string]int  // requests by webhook-id
}

func newReceiver(t *testing.T, respond respondFunc) *receiver {
	t.Helper()
	rc := &receiver{t: t, respond: respond, changed: make(chan struct{})}
	rc.seen.delivered = make(map[uint64]bool)
	rc.seen.count = make(map[string]int)
	rc.srv = httptest.NewServer(rc)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) URL() string { return rc.srv.URL + "/hooks/callfsm" }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("receiver: reading the body: %v", err)
		return
	}
	req := request{id: r.Header.Get(HeaderID), header: r.Header.Clone(), body: body}
	if err := Verify(testSecret, r.Header, body, time.Minute, time.Now()); err != nil {
		rc.t.Errorf("receiver: %s: %v", req.id, err)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/callfsm" {
		rc.t.Errorf("receiver: %s %s, want POST /hooks/callfsm", r.Method, r.URL.Path)
	}
	seq, err := strconv.ParseUint(strings.TrimPrefix(req.id, "evt_"), 10, 64)
	if err != nil || !strings.HasPrefix(req.id, "evt_") {
		rc.t.Errorf("receiver: webhook-id %q, want evt_<seq>", req.id)
	}
	req.seq = seq
	ev, err := event.Decode(body)
	if err != nil {
		rc.t.Errorf("receiver: %s: body %s: %v", req.id, body, err)
	}
	req.callID = ev.CallID

	rc.mu.Lock()
	rc.seen.arrived = append(rc.seen.arrived, req)
	rc.seen.count[req.id]++
	n := rc.seen.count[req.id]
	rc.notifyLocked()
	rc.mu.Unlock()

	a := answer{status: http.StatusOK}
	if rc.respond != nil {
		a = rc.respond(w, r, req, n)
	}
	req.status = a.status
	req.canceled = r.Context().Err() != nil
	rc.mu.Lock()
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
	rc.seen.done = append(rc.seen.done, req)
	if req.status/100 == 2 && !req.canceled {
		rc.seen.delivered[req.seq] = true
	}
	rc.notifyLocked()
	rc.mu.Unlock()
}

func (rc *receiver) notifyLocked() {
	close(rc.changed)
	rc.changed = make(chan struct{})
}

// await waits until cond holds for what the receiver has seen, failing the
// test after a long time.
func (rc *receiver) await(t *testing.T, what string, cond func(s *seen) bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		rc.mu.Lock()
		ok := cond(&rc.seen)
		changed := rc.changed
		rc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			rc.mu.Lock()
			defer rc.mu.Unlock()
			t.Fatalf("gave up waiting for %s: %d requests arrived, %d answered", what, len(rc.seen.arrived), len(rc.seen.done))
		}
	}
}

// snapshot returns the requests seen so far and the seqs delivered.
func (rc *receiver) snapshot() (arrived, done []request, delivered map[uint64]bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.seen.arrived), slices.Clone(rc.seen.done), maps.Clone(rc.seen.delivered)
}

// allDelivered is an await condition: every seq in [from, to] delivered.
func allDelivered(from, to uint64) func(s *seen) bool {
	next := from // every seq before next is delivered
	return func(s *seen) bool {
		for next <= to && s.delivered[next] {
			next++
		}
		return next > to
	}
}

// checkOrderPerCall fails if a call's requests arrived out of Seq order.
// Duplicates (a resend of the last one) are allowed.
func checkOrderPerCall(t *testing.T, arrived []request) {
	t.Helper()
	last := make(map[int64]uint64)
	for _, r := range arrived {
		if r.seq < last[r.callID] {
			t.Errorf("call %d: evt_%d arrived after evt_%d", r.callID, r.seq, last[r.callID])
		}
		last[r.callID] = r.seq
	}
}

func testConfig(t *testing.T, url string, l eventlog.Log) Config {
	dir := t.TempDir()
	return Config{
		URL:            url,
		Secret:         testSecret,
		Log:            l,
		CursorPath:     filepath.Join(dir, "cursor"),
		DeadLetterPath: filepath.Join(dir, "dead.jsonl"),
		BaseBackoff:    time.Millisecond,
		MaxBackoff:     time.Second,
	}
}

// sleeps records the backoff waits of a Dispatcher instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// running is a Dispatcher whose Run is going on in a goroutine.
type running struct {
	*Dispatcher
	once   sync.Once
	runErr chan error
	err    error
}

// start makes a Dispatcher, lets tweak adjust it, and runs it until the
// test ends (or stop is called).
func start(t *testing.T, cfg Config, tweak func(*Dispatcher)) *running {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tweak != nil {
		tweak(d)
	}
	r := &running{Dispatcher: d, runErr: make(chan error, 1)}
	go func() { r.runErr <- d.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := r.stop(ctx); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	return r
}

// stop shuts the Dispatcher down and returns what Shutdown and Run
// returned; later calls return Run's error again.
func (r *running) stop(ctx context.Context) (shutdownErr, runErr error) {
	shutdownErr = r.Shutdown(ctx)
	r.once.Do(func() { r.err = <-r.runErr })
	return shutdownErr, r.err
}

func (d *Dispatcher) windowLen() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.win)
}

// logSink is a slog.Handler that keeps the records, for tests to wait on
// and read.
type logSink struct {
	mu      sync.Mutex
	recs    []slog.Record
	attrs   []slog.Attr // from WithAttrs
	root    *logSink
	changed chan struct{}
}

func newLogSink() *logSink {
	s := &logSink{changed: make(chan struct{})}
	s.root = s
	return s
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(s.attrs...)
	root := s.root
	root.mu.Lock()
	defer root.mu.Unlock()
	root.recs = append(root.recs, r)
	close(root.changed)
	root.changed = make(chan struct{})
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSink{root: s.root, attrs: append(slices.Clip(s.attrs), as...)}
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

func (s *logSink) find(msg string) (slog.Record, bool) {
	for _, r := range s.recs {
		if r.Message == msg {
			return r, true
		}
	}
	return slog.Record{}, false
}

// await waits until a record with this message is logged.
func (s *logSink) await(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		_, ok := s.find(msg)
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("gave up waiting for the log message %q", msg)
		}
	}
}

// attr returns the value of key in the first record with this message.
func (s *logSink) attr(msg, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.find(msg)
	if !ok {
		return ""
	}
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
