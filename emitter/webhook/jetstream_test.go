package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
)

// The JetStream dispatcher against a real in-process nats-server, with
// receivers on loopback: several nodes (each its own connection and Log on
// the one stream) sharing the partitions, taking over from a node that
// stops, retrying, dead-lettering.

// Short enough for tests, within what NewJetStream accepts: a margin of
// (3s-1s)/2 = 1s (see keepAlive), and a partition moves to another node 3s
// after its node's last pull.
const (
	testAckWait   = time.Second
	testPinnedTTL = 3 * time.Second
)

// runNATS starts an in-process JetStream server for the test.
func runNATS(t *testing.T) *server.Server { return jstest.RunServer(t) }

// openJSLog connects to s and opens the stream's Log on that connection,
// both closed when the test ends.
func openJSLog(t *testing.T, s *server.Server) *jetstream.Log {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := jetstream.Open(context.Background(), jetstream.Config{
		Conn: nc, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("jetstream.Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendJS appends perCall events for each call, from step first on, and
// records each event's seq in seqs by call. Each step's events are
// appended concurrently (a call's events still go in order, a step after
// the other).
func appendJS(t *testing.T, l *jetstream.Log, calls []int64, first, perCall int, seqs map[int64][]uint64) {
	t.Helper()
	for step := first; step < first+perCall; step++ {
		got := make([]uint64, len(calls))
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < len(calls); i += 8 {
					got[i], errs[i] = l.Append(context.Background(), testEvent(calls[i], step))
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range calls {
			seqs[c] = append(seqs[c], got[i])
		}
	}
}

// nodeHeader tells the receiver which node sent a request.
const nodeHeader = "X-Test-Node"

// nodeTransport marks every request with its node's name.
type nodeTransport struct {
	name string
	base *http.Transport
}

func (nt nodeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(nodeHeader, nt.name)
	return nt.base.RoundTrip(r)
}

func jsTestConfig(t *testing.T, url string) JetStreamConfig {
	t.Helper()
	return JetStreamConfig{
		URL:            url,
		Secret:         testSecret,
		DeadLetterPath: filepath.Join(t.TempDir(), "dead.jsonl"),
		BaseBackoff:    time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		MaxAttempts:    1000,
		AckWait:        testAckWait,
		PinnedTTL:      testPinnedTTL,
	}
}

// jsNode is one delivery node: its own connection and Log on the stream,
// and a JetStreamDispatcher running on them until the test ends (or stop).
type jsNode struct {
	*JetStreamDispatcher
	name   string
	log    *jetstream.Log
	runErr chan error
	once   sync.Once
	err    error
}

// startNode makes a node's dispatcher from cfg, with l (the node's own Log,
// on its own connection) and a client that marks its requests, and runs
// it.
//
// Open every Log before starting any node: opening one updates the stream,
// and nats-server v2.15.2 races (go test -race sees it) between a stream
// update and a consumer's creation.
func startNode(t *testing.T, l *jetstream.Log, name string, cfg JetStreamConfig) *jsNode {
	t.Helper()
	n := &jsNode{name: name, log: l, runErr: make(chan error, 1)}
	cfg.Log = n.log
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cfg.Client = &http.Client{Transport: nodeTransport{name: name, base: tr}}
	d, err := NewJetStream(cfg)
	if err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	n.JetStreamDispatcher = d
	go func() { n.runErr <- d.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.stop(ctx)
	})
	return n
}

// stop shuts the node down and returns what Shutdown and Run returned;
// later calls return Run's error again.
func (n *jsNode) stop(ctx context.Context) (shutdownErr, runErr error) {
	shutdownErr = n.Shutdown(ctx)
	n.once.Do(func() { n.err = <-n.runErr })
	return shutdownErr, n.err
}

func (n *jsNode) delivered() float64 {
	return testutil.ToFloat64(n.m.deliveries.WithLabelValues(resultDelivered))
}

// eventually polls cond every 10ms until it holds, failing the test after
// a long time. For conditions nothing signals (a dispatcher's state, a
// consumer's info).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// checkDeliveredInOrder fails unless every appended event was delivered
// (answered 2xx) and, per call, the first deliveries came in append order.
// Duplicates are allowed: the receiver dedups on webhook-id.
func checkDeliveredInOrder(t *testing.T, done []request, appended map[int64][]uint64) {
	t.Helper()
	first := make(map[int64][]uint64) // per call, seqs in the order first delivered
	seen := make(map[uint64]bool)
	for _, r := range done {
		if r.status/100 != 2 || r.canceled || seen[r.seq] {
			continue
		}
		seen[r.seq] = true
		first[r.callID] = append(first[r.callID], r.seq)
	}
	bad := 0
	for c, want := range appended {
		if got := first[c]; fmt.Sprint(got) != fmt.Sprint(want) {
			if bad++; bad <= 5 {
				t.Errorf("call %d: first delivered %v, want %v", c, got, want)
			}
		}
	}
	if bad > 5 {
		t.Errorf("… and %d more calls", bad-5)
	}
}

// awaitShared waits until the nodes know of each other and pull disjoint
// sets of partitions that cover them all.
func awaitShared(t *testing.T, ns ...*jsNode) {
	t.Helper()
	eventually(t, "the nodes to share the partitions", func() bool {
		for _, n := range ns {
			if n.nodes.count() != len(ns) {
				return false
			}
		}
		for p := range ns[0].parts {
			pulling := 0
			for _, n := range ns {
				if n.consuming[p].Load() {
					pulling++
				}
			}
			if pulling != 1 {
				return false
			}
		}
		return true
	})
}

func totalEvents(appended map[int64][]uint64) uint64 {
	n := 0
	for _, s := range appended {
		n += len(s)
	}
	return uint64(n)
}

func TestJetStreamTwoNodesShareTheWorkAndKeepEachCallInOrder(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	producer, la, lb := openJSLog(t, s), openJSLog(t, s), openJSLog(t, s)
	rc := newReceiver(t, nil)
	cfg := jsTestConfig(t, rc.URL())
	a := startNode(t, la, "a", cfg)
	cfg.DeadLetterPath = filepath.Join(t.TempDir(), "dead.jsonl")
	b := startNode(t, lb, "b", cfg)
	awaitShared(t, a, b)

	appended := make(map[int64][]uint64)
	appendJS(t, producer, callRange(1, 200), 0, 4, appended)
	total := totalEvents(appended)
	rc.await(t, "all 800 events", allDelivered(1, total))

	for _, n := range []*jsNode{a, b} {
		if shutdownErr, runErr := n.stop(context.Background()); shutdownErr != nil || runErr != nil {
			t.Errorf("node %s: Shutdown = %v, Run = %v; want nil, nil", n.name, shutdownErr, runErr)
		}
		if _, err := os.Stat(n.cfg.DeadLetterPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node %s: dead-letter file exists (%v), want none", n.name, err)
		}
	}
	_, done, _ := rc.snapshot()
	checkDeliveredInOrder(t, done, appended)
	da, db := a.delivered(), b.delivered()
	if da == 0 || db == 0 {
		t.Errorf("node a delivered %v events, node b %v: want both to share the work", da, db)
	}
	if da+db < float64(total) {
		t.Errorf("nodes delivered %v events, want at least %d", da+db, total)
	}
	// Every partition's consumer acknowledged everything: nothing is
	// pending, and the ack floor is the partition's last event.
	checkAllAcked(t, producer, a.JetStreamDispatcher, appended)
}

// checkAllAcked waits until every partition's consumer has acknowledged
// its last appended event and holds nothing pending.
func checkAllAcked(t *testing.T, l *jetstream.Log, d *JetStreamDispatcher, appended map[int64][]uint64) {
	t.Helper()
	last := make(map[int]uint64) // by partition
	for c, seqs := range appended {
		p := l.Partition(c)
		last[p] = max(last[p], seqs[len(seqs)-1])
	}
	ctx := context.Background()
	for p := range l.Partitions() {
		cons, err := l.JetStream().Consumer(ctx, l.Stream(), d.ConsumerName(p))
		if err != nil {
			t.Fatalf("consumer %s: %v", d.ConsumerName(p), err)
		}
		var info *natsjs.ConsumerInfo
		eventually(t, "consumer "+d.ConsumerName(p)+" to acknowledge everything", func() bool {
			info, err = cons.Info(ctx)
			return err == nil && info.AckFloor.Stream == last[p] && info.NumAckPending == 0 && info.NumPending == 0
		})
	}
}

// TestJetStreamANodeThatStopsIsTakenOverInOrder stops a node that holds
// unacknowledged messages (its receiver calls fail, so they wait in
// retries) and appends newer events for the same calls at once: the other
// node must get the old ones, redelivered, before the newer ones of each
// call, and deliver everything.
func TestJetStreamANodeThatStopsIsTakenOverInOrder(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		stop func(t *testing.T, a *jsNode)
	}{
		{"Shutdown", func(t *testing.T, a *jsNode) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if shutdownErr, runErr := a.stop(ctx); shutdownErr != nil || runErr != nil {
				t.Errorf("Shutdown = %v, Run = %v; want nil, nil", shutdownErr, runErr)
			}
		}},
		{"connection closed", func(t *testing.T, a *jsNode) {
			a.log.Conn().Close()
			select {
			case err := <-a.runErr:
				a.once.Do(func() { a.err = err })
				if !errors.Is(err, nats.ErrConnectionClosed) {
					t.Errorf("Run = %v, want nats.ErrConnectionClosed", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return after the connection closed")
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := runNATS(t)
			producer, la, lb := openJSLog(t, s), openJSLog(t, s), openJSLog(t, s)
			var failA atomic.Bool
			rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ request, _ int) answer {
				if failA.Load() && r.Header.Get(nodeHeader) == "a" {
					return answer{status: http.StatusServiceUnavailable}
				}
				return answer{status: http.StatusOK}
			})
			cfg := jsTestConfig(t, rc.URL())
			a := startNode(t, la, "a", cfg)
			cfg.DeadLetterPath = filepath.Join(t.TempDir(), "dead.jsonl")
			b := startNode(t, lb, "b", cfg)
			awaitShared(t, a, b)

			calls := callRange(1, 100)
			appended := make(map[int64][]uint64)
			appendJS(t, producer, calls, 0, 2, appended)
			rc.await(t, "the first 200 events", allDelivered(1, totalEvents(appended)))
			if a.delivered() == 0 {
				t.Fatal("node a delivered nothing: it owns no partition to take over")
			}

			// a's receiver fails from now on: a's next events stay
			// unacknowledged, in retries.
			failA.Store(true)
			appendJS(t, producer, calls, 2, 1, appended)
			eventually(t, "node a to hold events it cannot deliver", func() bool {
				return a.Pending() > 0 && counterValue(t, a.m.failures.WithLabelValues(reasonStatus5xx)) > 0
			})
			tt.stop(t, a)
			// Newer events for the same calls, before b takes a's
			// partitions over.
			appendJS(t, producer, calls, 3, 1, appended)

			rc.await(t, "all 400 events", allDelivered(1, totalEvents(appended)))
			_, done, _ := rc.snapshot()
			checkDeliveredInOrder(t, done, appended)
			if got := testutil.ToFloat64(b.redeliv); got == 0 {
				t.Errorf("node b got no redelivery: want a's unacknowledged events sent again")
			}
			checkAllAcked(t, producer, b.JetStreamDispatcher, appended)
		})
	}
}

func TestJetStreamRetriesAndKeepsEachCallInOrder(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	producer := openJSLog(t, s)
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, _ request, n int) answer {
		if n == 1 {
			return answer{status: http.StatusInternalServerError, body: "not yet"}
		}
		return answer{status: http.StatusOK}
	})
	n := startNode(t, producer, "a", jsTestConfig(t, rc.URL()))

	appended := make(map[int64][]uint64)
	appendJS(t, producer, callRange(1, 50), 0, 4, appended)
	total := totalEvents(appended)
	rc.await(t, "all 200 events", allDelivered(1, total))
	if shutdownErr, runErr := n.stop(context.Background()); shutdownErr != nil || runErr != nil {
		t.Errorf("Shutdown = %v, Run = %v; want nil, nil", shutdownErr, runErr)
	}

	arrived, done, _ := rc.snapshot()
	checkOrderPerCall(t, arrived) // a call's next event waits for the retries of the one before
	checkDeliveredInOrder(t, done, appended)
	if got := counterValue(t, n.m.failures.WithLabelValues(reasonStatus5xx)); got != float64(total) {
		t.Errorf("%v 5xx failures, want %d (one per event)", got, total)
	}
	if got := n.delivered(); got != float64(total) {
		t.Errorf("%v delivered, want %d", got, total)
	}
	checkAllAcked(t, producer, n.JetStreamDispatcher, appended)
}

// TestJetStreamKeepsHeldMessagesAliveWhileRetrying holds a call's first
// event in retries, and the call's next events behind it, for over oks
// AckWait: the node says they are in progress, so the server sends none of
// them again.
func TestJetStreamKeepsHeldMessagesAliveWhileRetrying(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	producer := openJSLog(t, s)
	var mu sync.Mutex
	var firstTry time.Time
	first := testEvent(1, 0).Event
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, req request, _ int) answer {
		if req.callID != 1 || !strings.Contains(string(req.body), `"`+first+`"`) {
			return answer{status: http.StatusOK}
		}
		mu.Lock()
		defer mu.Unlock()
		if firstTry.IsZero() {
			firstTry = time.Now()
		}
		if time.Since(firstTry) < 5*testAckWait/2 {
			return answer{status: http.StatusServiceUnavailable}
		}
		return answer{status: http.StatusOK}
	})
	cfg := jsTestConfig(t, rc.URL())
	cfg.MaxBackoff = 100 * time.Millisecond
	n := startNode(t, producer, "a", cfg)

	appended := make(map[int64][]uint64)
	appendJS(t, producer, callRange(1, 4), 0, 3, appended)
	rc.await(t, "all 12 events", allDelivered(1, totalEvents(appended)))
	if shutdownErr, runErr := n.stop(context.Background()); shutdownErr != nil || runErr != nil {
		t.Errorf("Shutdown = %v, Run = %v; want nil, nil", shutdownErr, runErr)
	}

	_, done, _ := rc.snapshot()
	checkDeliveredInOrder(t, done, appended)
	if got := testutil.ToFloat64(n.redeliv); got != 0 {
		t.Errorf("%v messages sent again, want none: held messages must be kept alive", got)
	}
	oks := 0
	for _, r := range done {
		if r.status == http.StatusOK && r.seq != appended[1][0] {
			oks++
		}
	}
	if want := int(totalEvents(appended)) - 1; oks != want {
		t.Errorf("%d 2xx for the events but call 1's first, want %d (each once)", oks, want)
	}
	checkAllAcked(t, producer, n.JetStreamDispatcher, appended)
}

func TestJetStreamDeadLettersAndAcknowledges(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	producer := openJSLog(t, s)
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, _ request, _ int) answer {
		return answer{status: http.StatusServiceUnavailable, body: "down for good"}
	})
	cfg := jsTestConfig(t, rc.URL())
	cfg.MaxAttempts = 2
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	n := startNode(t, producer, "a", cfg)

	appended := make(map[int64][]uint64)
	appendJS(t, producer, callRange(1, 10), 0, 3, appended)
	total := totalEvents(appended)
	eventually(t, "every event dead-lettered", func() bool {
		return testutil.ToFloat64(n.m.deliveries.WithLabelValues(resultDeadLettered)) == float64(total)
	})
	// Dead-lettered events are acknowledged: the ack floor moves past them.
	checkAllAcked(t, producer, n.JetStreamDispatcher, appended)

	dls := deadLetters(t, cfg.DeadLetterPath)
	if len(dls) != int(total) {
		t.Fatalf("%d dead letters, want %d", len(dls), total)
	}
	bySeq := make(map[uint64]DeadLetter)
	for _, dl := range dls {
		bySeq[dl.Seq] = dl
	}
	for c, seqs := range appended {
		for step, seq := range seqs {
			dl, ok := bySeq[seq]
			want := testEvent(c, step)
			switch {
			case !ok:
				t.Errorf("no dead letter for seq %d", seq)
			case dl.WebhookID != EventID(seq) || dl.CallID != c || dl.Event != want.Event || dl.Attempts != 2 || dl.URL != rc.URL():
				t.Errorf("dead letter %+v, want %s of call %d (%s) after 2 attempts to %s", dl, EventID(seq), c, want.Event, rc.URL())
			case !strings.HasPrefix(dl.Reason, "status 503") || !strings.Contains(dl.Reason, "down for good"):
				t.Errorf("dead letter reason %q", dl.Reason)
			}
		}
	}

	m := gather(t, reg)
	u := `url="` + rc.URL() + `"`
	for name, want := range map[string]float64{
		`callfsm_webhook_deliveries_total{result="dead_lettered",` + u + `}`: float64(total),
		`callfsm_webhook_attempts_total{` + u + `}`:                          float64(2 * total),
		`callfsm_webhook_queue_depth{` + u + `}`:                             0,
	} {
		if got := m[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	pinned := 0.0
	for p := range producer.Partitions() {
		pinned += m[fmt.Sprintf(`callfsm_webhook_partition_pinned{partition="%d",%s}`, p, u)]
	}
	if pinned != float64(len(partitionsOf(producer, appended))) {
		t.Errorf("%v partitions pinned, want the %d that had events (one node)", pinned, len(partitionsOf(producer, appended)))
	}
}

func partitionsOf(l *jetstream.Log, appended map[int64][]uint64) map[int]bool {
	ps := make(map[int]bool)
	for c := range appended {
		ps[l.Partition(c)] = true
	}
	return ps
}

func TestNewJetStreamRejectsABadConfig(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	l := openJSLog(t, s)
	tests := []struct {
		name  string
		edit  func(*JetStreamConfig)
		field string
		is    error
	}{
		{"no log", func(c *JetStreamConfig) { c.Log = nil }, "Log", nil},
		{"no URL", func(c *JetStreamConfig) { c.URL = "" }, "URL", nil},
		{"not http", func(c *JetStreamConfig) { c.URL = "ftp://example.com/x" }, "URL", nil},
		{"no secret", func(c *JetStreamConfig) { c.Secret = "" }, "Secret", nil},
		{"bad secret", func(c *JetStreamConfig) { c.Secret = "hunter2" }, "Secret", ErrSecret},
		{"no dead-letter path", func(c *JetStreamConfig) { c.DeadLetterPath = "" }, "DeadLetterPath", nil},
		{"dead-letter dir missing", func(c *JetStreamConfig) { c.DeadLetterPath = filepath.Join(t.TempDir(), "nope", "d") }, "DeadLetterPath", os.ErrNotExist},
		{"bad name", func(c *JetStreamConfig) { c.Name = "hooks.crm" }, "Name", nil},
		{"long name", func(c *JetStreamConfig) { c.Name = strings.Repeat("n", 65) }, "Name", nil},
		{"negative Parallel", func(c *JetStreamConfig) { c.Parallel = -1 }, "Parallel", nil},
		{"negative Window", func(c *JetStreamConfig) { c.Window = -1 }, "Window", nil},
		{"negative MaxAttempts", func(c *JetStreamConfig) { c.MaxAttempts = -1 }, "MaxAttempts", nil},
		{"MaxBackoff below BaseBackoff", func(c *JetStreamConfig) { c.BaseBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "MaxBackoff", nil},
		{"negative Timeout", func(c *JetStreamConfig) { c.Timeout = -1 }, "Timeout", nil},
		{"negative AckWait", func(c *JetStreamConfig) { c.AckWait = -1 }, "AckWait", nil},
		{"tiny AckWait", func(c *JetStreamConfig) { c.AckWait = time.Millisecond }, "AckWait", nil},
		{"negative PinnedTTL", func(c *JetStreamConfig) { c.PinnedTTL = -1 }, "PinnedTTL", nil},
		{"PinnedTTL within AckWait + 2s", func(c *JetStreamConfig) { c.AckWait, c.PinnedTTL = 10*time.Second, 11*time.Second }, "PinnedTTL", nil},
		{"default PinnedTTL within AckWait + 2s", func(c *JetStreamConfig) { c.AckWait, c.PinnedTTL = 29*time.Second, 0 }, "PinnedTTL", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := jsTestConfig(t, "http://127.0.0.1:1/hook")
			cfg.Log = l
			tt.edit(&cfg)
			d, err := NewJetStream(cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, ErrConfig) {
				t.Fatalf("NewJetStream = %v, %v; want a ConfigError for %s", d, err, tt.field)
			}
			if !strings.Contains(err.Error(), "JetStreamConfig."+tt.field) {
				t.Errorf("error %q does not name JetStreamConfig.%s", err, tt.field)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}

	// The same URL cannot register its metrics oks on one registry.
	reg := prometheus.NewRegistry()
	cfg := jsTestConfig(t, "http://127.0.0.1:1/hook")
	cfg.Log, cfg.Registerer = l, reg
	if _, err := NewJetStream(cfg); err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	var ce *ConfigError
	if _, err := NewJetStream(cfg); !errors.As(err, &ce) || ce.Field != "Registerer" {
		t.Errorf("a second dispatcher for the URL on the registry: %v, want a Registerer ConfigError", err)
	}
}

func TestNewJetStreamDefaultsAndConsumers(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	l := openJSLog(t, s)
	d, err := NewJetStream(JetStreamConfig{
		Log: l, URL: "https://example.com/hook?token=x", Secret: testSecret,
		DeadLetterPath: filepath.Join(t.TempDir(), "d"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := d.cfg
	got := []any{c.Name, c.Parallel, c.Window, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout, c.AckWait, c.PinnedTTL, d.margin, d.pullWait}
	want := []any{"", 8, 256, 8, 500 * time.Millisecond, time.Minute, 10 * time.Second, 10 * time.Second, 30 * time.Second, 10 * time.Second, 10 * time.Second / 3}
	want[0] = got[0] // checked below
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("defaults %v, want %v", got, want)
	}
	if name := c.Name; !strings.HasPrefix(name, "webhook-") || len(name) != len("webhook-")+12 {
		t.Errorf("default Name %q, want webhook-<12 hex digits>", name)
	}
	if got, want := d.ConsumerName(7), c.Name+"-p7"; got != want {
		t.Errorf("ConsumerName(7) = %q, want %q", got, want)
	}
	cc := d.consumerConfig(7)
	if cc.FilterSubject != l.PartitionSubjects(7)+".*" || cc.AckPolicy != natsjs.AckExplicitPolicy ||
		cc.DeliverPolicy != natsjs.DeliverAllPolicy || cc.PriorityPolicy != natsjs.PriorityPolicyPinned ||
		cc.AckWait >= cc.PinnedTTL || cc.MaxDeliver != -1 || cc.MaxAckPending != 256 ||
		fmt.Sprint(cc.PriorityGroups) != "[webhook]" || strings.Contains(cc.Description, "token") {
		t.Errorf("consumer config %+v", cc)
	}

	// Shutdown before Run: Run returns ErrClosed and creates nothing.
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Run = %v", err)
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Shutdown = %v, want ErrClosed", err)
	}
	if _, err := l.JetStream().Consumer(context.Background(), l.Stream(), d.ConsumerName(0)); !errors.Is(err, natsjs.ErrConsumerNotFound) {
		t.Errorf("consumer after a Run that did not run: %v, want ErrConsumerNotFound", err)
	}
}

// TestJetStreamALostDeliveryStopsThePartition feeds receive real messages
// of one call, pulled under one pin, with one missing: the one after the
// gap is refused (queuing it would deliver the call's newer event before
// the lost one), and resync drops what the partition held, to be sent
// again in order.
func TestJetStreamALostDeliveryStopsThePartition(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	l := openJSLog(t, s)
	appended := make(map[int64][]uint64)
	appendJS(t, l, []int64{7}, 0, 3, appended)
	d, err := NewJetStream(func() JetStreamConfig {
		cfg := jsTestConfig(t, "http://127.0.0.1:1/hook")
		cfg.Log = l
		return cfg
	}())
	if err != nil {
		t.Fatal(err)
	}
	p := l.Partition(7)
	ctx := context.Background()
	cons, err := l.JetStream().CreateOrUpdateConsumer(ctx, l.Stream(), d.consumerConfig(p))
	if err != nil {
		t.Fatal(err)
	}
	d.notePull(p, time.Now()) // as consume does
	batch, err := cons.Fetch(3, natsjs.FetchMaxWait(time.Second), natsjs.FetchPriorityGroup(PriorityGroup))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []natsjs.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 3 || batch.Error() != nil {
		t.Fatalf("fetched %d messages (%v), want 3", len(msgs), batch.Error())
	}

	for _, step := range []struct {
		msg  int
		want bool
	}{{0, true}, {2, false}, {1, true}} {
		if got := d.receive(p, msgs[step.msg]); got != step.want {
			t.Errorf("receive(delivery %d) = %v, want %v", step.msg+1, got, step.want)
		}
	}
	if got := d.Pending(); got != 2 {
		t.Errorf("Pending = %d after deliveries 1 and 2, want 2", got)
	}
	if !d.pins[p].pinned(time.Now(), d.margin) {
		t.Errorf("partition %d not pinned after the messages proved the pin", p)
	}

	stopped, cancel := context.WithCancel(ctx)
	cancel() // no waiting: what resync leaves behind is what matters here
	_ = d.resync(stopped, p)
	if got := d.Pending(); got != 0 {
		t.Errorf("Pending = %d after resync, want 0: everything left to expire", got)
	}
	if d.pins[p].pinned(time.Now(), d.margin) {
		t.Errorf("partition %d still kept alive after resync", p)
	}
	if got := d.receive(p, msgs[2]); !got {
		t.Errorf("receive after resync = false, want a fresh start")
	}
}

// TestJetStreamKeepsACallsMessagesDueInOrder checks what the server does
// with a call's messages once the node holding them stops saying they are
// in progress (it stopped, died or lost the pin): it puts each on its
// redelivery queue when its AckWait has passed, a batch at a time, and the
// node pinned next gets that queue in its order. So the node must never
// leave a call's later message due before an earlier one: here one call's
// two messages, held by a node, then left to expire, must come back
// earliest first.
func TestJetStreamKeepsACallsMessagesDueInOrder(t *testing.T) {
	t.Parallel()
	// gap is how much later the server's timestamp of one message is than
	// the other's in the cases below, when the order is not kept: long
	// enough that the server's redelivery timer tells them apart.
	const gap = 300 * time.Millisecond
	tests := []struct {
		name string
		// hold has the node receive msgs (the call's two messages, fetched
		// under the pin) and keep them alive as keepAlive would.
		hold func(t *testing.T, d *JetStreamDispatcher, p int, cons natsjs.Consumer, msgs []natsjs.Msg)
	}{
		{"a tick finds the first message due and the second fresh", func(t *testing.T, d *JetStreamDispatcher, p int, _ natsjs.Consumer, msgs []natsjs.Msg) {
			receiveAt(t, d, p, msgs[0], time.Now().Add(-testAckWait)) // held for long
			time.Sleep(gap)                                           // not a wait: the gap between two server timestamps
			receiveAt(t, d, p, msgs[1], time.Now())
			d.touch(time.Now())
		}},
		{"the second message arrives after a tick", func(t *testing.T, d *JetStreamDispatcher, p int, _ natsjs.Consumer, msgs []natsjs.Msg) {
			receiveAt(t, d, p, msgs[0], time.Now().Add(-testAckWait))
			time.Sleep(gap) // the second was sent to the node before the tick
			d.touch(time.Now())
			receiveAt(t, d, p, msgs[1], time.Now())
		}},
		{"the first message is sent again while held", func(t *testing.T, d *JetStreamDispatcher, p int, cons natsjs.Consumer, msgs []natsjs.Msg) {
			receiveAt(t, d, p, msgs[0], time.Now())
			receiveAt(t, d, p, msgs[1], time.Now())
			time.Sleep(gap)
			if err := msgs[1].InProgress(); err != nil { // as a tick would have
				t.Fatal(err)
			}
			// The first expires, and comes back to this node (the pin is
			// its own): the server stamps it anew, later than the second.
			d.notePull(p, time.Now())
			again := fetchN(t, cons, 1, 3*testAckWait)
			receiveAt(t, d, p, again[0], time.Now())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := runNATS(t)
			l := openJSLog(t, s)
			appended := make(map[int64][]uint64)
			appendJS(t, l, []int64{7}, 0, 2, appended)
			cfg := jsTestConfig(t, "http://127.0.0.1:1/hook")
			cfg.Log = l
			d, err := NewJetStream(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := l.Partition(7)
			cons, err := l.JetStream().CreateOrUpdateConsumer(context.Background(), l.Stream(), d.consumerConfig(p))
			if err != nil {
				t.Fatal(err)
			}
			d.notePull(p, time.Now()) // as consume does
			msgs := fetchN(t, cons, 2, time.Second)

			tt.hold(t, d, p, cons, msgs)

			// The node stops keeping them alive; the same pin pulls again
			// once they are due.
			d.notePull(p, time.Now())
			var got []uint64
			for _, m := range fetchN(t, cons, 2, 5*testAckWait) {
				md, err := m.Metadata()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, md.Sequence.Stream)
			}
			if want := appended[7]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("sent again in the order %v, want %v: a call's later event would be delivered before its earlier one", got, want)
			}
		})
	}
}

// receiveAt has d receive m at now, as a pull of partition p would.
func receiveAt(t *testing.T, d *JetStreamDispatcher, p int, m natsjs.Msg, now time.Time) {
	t.Helper()
	d.now = func() time.Time { return now }
	if !d.receive(p, m) {
		t.Fatal("receive refused the message")
	}
}

// fetchN pulls n messages from cons within wait, under its pin.
func fetchN(t *testing.T, cons natsjs.Consumer, n int, wait time.Duration) []natsjs.Msg {
	t.Helper()
	batch, err := cons.Fetch(n, natsjs.FetchMaxWait(wait), natsjs.FetchPriorityGroup(PriorityGroup))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []natsjs.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != n || batch.Error() != nil {
		t.Fatalf("fetched %d messages (%v), want %d", len(msgs), batch.Error(), n)
	}
	return msgs
}

// TestJetStreamStartsWhileNATSIsAway starts a node's delivery while its
// nats-server is down: Run waits for NATS instead of failing, and delivers
// once the server is back.
func TestJetStreamStartsWhileNATSIsAway(t *testing.T) {
	t.Parallel()
	s := runNATS(t)
	nc := jstest.Connect(t, s.ClientURL()) // reconnects for as long as the test runs
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s.Shutdown()
	s.WaitForShutdown()

	rc := newReceiver(t, nil)
	cfg := jsTestConfig(t, rc.URL())
	logs := &syncLog{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n := startNode(t, l, "a", cfg)
	// Run tries again while NATS does not answer (a request times out
	// after 5 s); before, it returned the error and the node stopped.
	eventually(t, "Run trying the consumer again", func() bool {
		select {
		case err := <-n.runErr:
			t.Fatalf("Run with NATS away returned %v, want it to wait for NATS", err)
		default:
		}
		return strings.Contains(logs.String(), "creating the consumer again")
	})
	jstest.Restart(t, s)
	appended := make(map[int64][]uint64)
	appendJS(t, l, callRange(1, 5), 0, 2, appended)
	rc.await(t, "the events appended once NATS is back", allDelivered(1, totalEvents(appended)))
	if _, runErr := n.stop(context.Background()); runErr != nil {
		t.Errorf("Run = %v, want nil", runErr)
	}
}

// syncLog is a log destination safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
