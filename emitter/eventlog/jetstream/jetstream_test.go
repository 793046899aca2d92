package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/eventlogtest"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runServer starts an in-process JetStream server for the test.
func runServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// connect opens a connection to s, closed when the test ends.
func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func open(t *testing.T, cfg jetstream.Config) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestConformance(t *testing.T) {
	nc := connect(t, runServer(t))
	var n atomic.Int64
	eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
		i := n.Add(1)
		return open(t, jetstream.Config{Conn: nc, Stream: fmt.Sprintf("T%d", i), Subjects: fmt.Sprintf("t%d.calls", i)})
	})
}

func TestReopenContinuesNumbering(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	cfg := jetstream.Config{Conn: nc}
	l := open(t, cfg)
	for i := range 3 {
		if _, err := l.Append(ctx, eventlogtest.Event(7, "ringing", int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := open(t, cfg)
	if got := l2.LastSeq(); got != 3 {
		t.Fatalf("LastSeq after reopening = %d, want 3", got)
	}
	if seq, err := l2.Append(ctx, eventlogtest.Event(7, "accepted", 4)); err != nil || seq != 4 {
		t.Fatalf("Append after reopening = %d, %v; want 4", seq, err)
	}
	recs, err := l2.Read(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("Read gave %d records, want 4", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Event.Timestamp != int64(i+1) {
			t.Fatalf("record %d = seq %d ts %d", i, r.Seq, r.Event.Timestamp)
		}
	}
}

func TestBodyAndSubject(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	l := open(t, jetstream.Config{Conn: nc, Stream: "BODY", Subjects: "popin.calls"})
	phone := "+91 98765 43210"
	ev := event.Event{
		Event: "popin_outgoing_call_initiated", SessionID: "sess-1", UserID: 58559, CallID: 28844,
		Agent:     event.AgentInfo{Name: "Sasha", Email: "sasha@example.com"},
		User:      event.UserInfo{Name: "Demo \"Vishal\" ☎", Email: "demo@example.com", PhoneNumber: &phone, CountryCode: "+91"},
		Timestamp: 1700000000123,
	}
	seq, err := l.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}

	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "BODY")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Subject, "popin.calls.12.28844"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	if want := ev.AppendJSON(nil); !bytes.Equal(msg.Data, want) {
		t.Errorf("body = %s\nwant   %s", msg.Data, want)
	}
	recs, err := l.Read(ctx, seq, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Read = %v, %v", recs, err)
	}
	if got, want := recs[0].Event.AppendJSON(nil), ev.AppendJSON(nil); !bytes.Equal(got, want) {
		t.Errorf("read back %s\nwant      %s", got, want)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; !c.AllowDirect || c.Storage != natsjs.FileStorage || c.Replicas != 1 || len(c.Subjects) != 1 || c.Subjects[0] != "popin.calls.>" {
		t.Errorf("stream config: allow_direct %v storage %v replicas %d subjects %v", c.AllowDirect, c.Storage, c.Replicas, c.Subjects)
	}
}

// TestReadLargeBatches reads more than one direct batch get holds, from a
// Log opened after the appends (whose tail holds none of them), and from
// memory on the Log that appended them.
func TestReadLargeBatches(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	writer := open(t, jetstream.Config{Conn: nc})
	const n = 1300
	for i := 1; i <= n; i++ {
		if _, err := writer.Append(ctx, eventlogtest.Event(int64(i%9), "ringing", int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Wait(ctx, n-1); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*jetstream.Log{"direct gets": open(t, jetstream.Config{Conn: nc}), "memory": writer} {
		t.Run(name, func(t *testing.T) { readLarge(t, l, n) })
	}
}

func readLarge(t *testing.T, l *jetstream.Log, n uint64) {
	ctx := context.Background()
	for _, tc := range []struct {
		from uint64
		max  int
		want int
	}{
		{1, int(n), int(n)},
		{1, 1 << 30, int(n)},
		{200, 1050, 1050},
		{1200, 500, 101},
		{n + 1, 10, 0},
	} {
		recs, err := l.Read(ctx, tc.from, tc.max)
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", tc.from, tc.max, err)
		}
		if len(recs) != tc.want {
			t.Fatalf("Read(%d, %d) gave %d records, want %d", tc.from, tc.max, len(recs), tc.want)
		}
		for i, r := range recs {
			if want := tc.from + uint64(i); r.Seq != want || r.Event.Timestamp != int64(want) {
				t.Fatalf("Read(%d, %d)[%d] = seq %d ts %d, want %d", tc.from, tc.max, i, r.Seq, r.Event.Timestamp, want)
			}
		}
	}
}

// TestWaitSeesOtherNodes: a Log wakes on an append made through another
// Log (another node) on the same stream.
func TestWaitSeesOtherNodes(t *testing.T) {
	s := runServer(t)
	ctx := context.Background()
	a := open(t, jetstream.Config{Conn: connect(t, s)})
	b := open(t, jetstream.Config{Conn: connect(t, s)})
	woke := make(chan error, 1)
	go func() { woke <- b.Wait(ctx, 0) }()
	if _, err := a.Append(ctx, eventlogtest.Event(1, "initiated", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(10 * time.Second): // a bound on a hang
		t.Fatal("Wait on node b did not wake on node a's append")
	}
	if got := b.LastSeq(); got != 1 {
		t.Fatalf("b.LastSeq = %d, want 1", got)
	}
	recs, err := b.Read(ctx, 1, 10)
	if err != nil || len(recs) != 1 || recs[0].Seq != 1 {
		t.Fatalf("b.Read = %v, %v", recs, err)
	}
}

func TestMsgIDDeduplicates(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	l := open(t, jetstream.Config{Conn: nc, MsgID: func(ev *event.Event) string {
		return fmt.Sprintf("%d:%s:%d", ev.CallID, ev.Event, ev.Timestamp)
	}})
	ev := eventlogtest.Event(3, "ringing", 10)
	first, err := l.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 || again != 1 || l.LastSeq() != 1 {
		t.Fatalf("appends of one msg id gave seqs %d and %d, LastSeq %d; want 1, 1, 1", first, again, l.LastSeq())
	}
}

func TestOpenValidates(t *testing.T) {
	nc := connect(t, runServer(t))
	for _, tc := range []struct {
		name string
		cfg  jetstream.Config
	}{
		{"no conn", jetstream.Config{}},
		{"dotted stream", jetstream.Config{Conn: nc, Stream: "A.B"}},
		{"wildcard prefix", jetstream.Config{Conn: nc, Subjects: "calls.*"}},
		{"trailing dot", jetstream.Config{Conn: nc, Subjects: "calls."}},
		{"negative replicas", jetstream.Config{Conn: nc, Replicas: -1}},
		{"too many replicas for one server", jetstream.Config{Conn: nc, Stream: "R3", Subjects: "r3", Replicas: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := jetstream.Open(context.Background(), tc.cfg); err == nil {
				l.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func TestClose(t *testing.T) {
	nc := connect(t, runServer(t))
	l := open(t, jetstream.Config{Conn: nc})
	ctx := context.Background()
	if _, err := l.Append(ctx, eventlogtest.Event(1, "initiated", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
	// One subscription is the Log's (the tail consumer); Close ends it and
	// leaves the connection open.
	before := nc.NumSubscriptions()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := nc.NumSubscriptions(); got != before-1 || nc.IsClosed() {
		t.Fatalf("after Close: %d subscriptions (want %d), connection closed %v", got, before-1, nc.IsClosed())
	}
	if _, err := l.Read(context.Background(), 1, 1); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}
	if err := l.Wait(context.Background(), 0); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Wait after Close = %v, want ErrClosed", err)
	}
}

// TestAppendIf is the compare-and-set a call's transitions rely on.
func TestAppendIf(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	l := open(t, jetstream.Config{Conn: nc})
	ev := func(name string) event.Event {
		return event.Event{Event: name, SessionID: "s", UserID: 1, CallID: 9, Timestamp: 100}
	}

	_, ok, err := l.Last(ctx, 9)
	if err != nil || ok {
		t.Fatalf("Last of a call with no event = %v, %v; want none", ok, err)
	}
	s1, dup, err := l.AppendIf(ctx, ev("popin_outgoing_call_initiated"), 0, "9.0.create")
	if err != nil || dup {
		t.Fatalf("first append = %d, %v, %v", s1, dup, err)
	}
	if _, _, err := l.AppendIf(ctx, ev("popin_outgoing_call_initiated"), 0, "9.0.other"); !errors.Is(err, jetstream.ErrConflict) {
		t.Fatalf("append expecting no event on a call with one: %v, want ErrConflict", err)
	}
	s2, _, err := l.AppendIf(ctx, ev("popin_outgoing_call_ringing"), s1, "9.1.ring")
	if err != nil {
		t.Fatal(err)
	}
	// A retry of the same append stores nothing; the call's last event
	// carries the retried append's id.
	if _, _, err := l.AppendIf(ctx, ev("popin_outgoing_call_ringing"), s1, "9.1.ring"); !errors.Is(err, jetstream.ErrConflict) {
		t.Fatalf("retried append: %v, want ErrConflict", err)
	}
	if _, _, err := l.AppendIf(ctx, ev("popin_outgoing_call_accepted"), s1, "9.1.accept"); !errors.Is(err, jetstream.ErrConflict) {
		t.Fatalf("append after a stale event: %v, want ErrConflict", err)
	}
	last, ok, err := l.Last(ctx, 9)
	if err != nil || !ok || last.Seq != s2 || last.Event.Event != "popin_outgoing_call_ringing" || last.MsgID != "9.1.ring" {
		t.Fatalf("Last = %+v, %v, %v; want the ringing event at %d, id 9.1.ring", last, ok, err, s2)
	}
	if since := time.Since(last.Stored); since < 0 || since > time.Minute {
		t.Errorf("Last says the event was stored at %v", last.Stored)
	}
	leader, ok, err := l.LastFromLeader(ctx, 9)
	if err != nil || !ok || leader.Seq != last.Seq || leader.MsgID != last.MsgID || leader.Event.Event != last.Event.Event || !leader.Stored.Equal(last.Stored) {
		t.Fatalf("LastFromLeader = %+v, %v, %v; want %+v", leader, ok, err, last)
	}
	if _, ok, err := l.LastFromLeader(ctx, 10); ok || err != nil {
		t.Fatalf("LastFromLeader of a call with no event = %v, %v; want none", ok, err)
	}
	if got := l.LastSeq(); got != s2 {
		t.Errorf("LastSeq = %d, want %d", got, s2)
	}
}

func TestPartitionsAreFixed(t *testing.T) {
	nc := connect(t, runServer(t))
	l := open(t, jetstream.Config{Conn: nc, Partitions: 4})
	if got, want := l.Subject(10), "callfsm.calls.2.10"; got != want {
		t.Errorf("Subject(10) = %q, want %q", got, want)
	}
	if got, want := l.PartitionSubjects(3), "callfsm.calls.3"; got != want {
		t.Errorf("PartitionSubjects(3) = %q, want %q", got, want)
	}
	if _, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc, Partitions: 8}); err == nil {
		t.Fatal("reopening a 4-partition stream with 8 partitions succeeded")
	}
	again := open(t, jetstream.Config{Conn: nc})
	if got := again.Partitions(); got != 4 {
		t.Errorf("reopened with Partitions 0: %d partitions, want the stream's 4", got)
	}
	if _, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc, Partitions: -1}); err == nil {
		t.Fatal("Open with -1 partitions succeeded")
	}
}

// TestAppendIfRetried: a retry of a stored append (same message id, same
// expected sequence) stores nothing. One server refuses it as a conflict;
// a replicated stream's leader answers it as a duplicate, with the stored
// append's sequence, even once the call has moved on.
func TestAppendIfRetried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		url      func(t *testing.T) string
	}{
		{"one server", 1, func(t *testing.T) string { return jstest.RunServer(t).ClientURL() }},
		{"three replicas", 3, func(t *testing.T) string { return jstest.ClusterURLs(jstest.RunCluster(t, 3)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l := open(t, jetstream.Config{Conn: jstest.Connect(t, tc.url(t)), Replicas: tc.replicas})
			ev := eventlogtest.Event(9, "initiated", 1)
			first, _, err := l.AppendIf(ctx, ev, 0, "9.0.create")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.AppendIf(ctx, eventlogtest.Event(9, "ringing", 2), first, "9.1.ring"); err != nil {
				t.Fatal(err)
			}
			seq, dup, err := l.AppendIf(ctx, ev, 0, "9.0.create")
			switch {
			case tc.replicas == 1 && !errors.Is(err, jetstream.ErrConflict):
				t.Fatalf("retry = %d, %v, %v; want ErrConflict", seq, dup, err)
			case tc.replicas > 1 && (err != nil || !dup || seq != first):
				t.Fatalf("retry = %d, %v, %v; want a duplicate of %d", seq, dup, err, first)
			}
			if got := l.LastSeq(); got != 2 {
				t.Fatalf("LastSeq = %d, want 2: the retry stored nothing", got)
			}
		})
	}
}

// TestOpenLeavesAMatchingStreamAlone opens a stream that is already as
// wanted without writing it (so that nodes starting together do not all
// update it): two JetStream API requests, the stream's lookup and the
// tail's consumer, where creating the stream takes more.
func TestOpenLeavesAMatchingStreamAlone(t *testing.T) {
	nc := connect(t, runServer(t))
	ctx := context.Background()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	requests := func(open func()) uint64 {
		before, err := js.AccountInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		open()
		after, err := js.AccountInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return after.API.Total - before.API.Total - 1 // less the first AccountInfo
	}
	created := requests(func() { open(t, jetstream.Config{Conn: nc, Stream: "A", Subjects: "a"}) })
	reopened := requests(func() { open(t, jetstream.Config{Conn: nc, Stream: "A", Subjects: "a"}) })
	if reopened != 2 || created <= reopened {
		t.Fatalf("opening an existing stream took %d API requests (creating it %d): want 2, no update", reopened, created)
	}
}
