package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/check"
	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/eventlogtest"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/fsm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one callfsm node: its own connection, log and engine.
type node struct {
	nc  *nats.Conn
	log *jetstream.Log
	eng *cluster.Engine
}

// startNode starts a node on url, stopped when the test ends (or by stop).
func startNode(t *testing.T, url string, cfg cluster.Config) *node {
	t.Helper()
	nc := jstest.Connect(t, url)
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc})
	require.NoError(t, err)
	cfg.Log = l
	eng, err := cluster.New(context.Background(), cfg)
	require.NoError(t, err)
	n := &node{nc: nc, log: l, eng: eng}
	t.Cleanup(n.stop)
	return n
}

// stop stops the node as serve does: the engine hands the timers it holds
// back to JetStream, then the log and the connection close.
func (n *node) stop() {
	n.eng.Close()
	n.log.Close()
	n.nc.Close()
}

// shortSpec is the outgoing lifecycle with 2 s timeouts.
func shortSpec(t *testing.T) *fsm.Spec {
	t.Helper()
	s, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{
		fsm.Initiated: 2 * time.Second, fsm.Ringing: 2 * time.Second, fsm.Accepted: 2 * time.Second,
	})
	require.NoError(t, err)
	return s
}

// fastTimers are timer settings for tests with short timeouts.
func fastTimers(spec *fsm.Spec) cluster.Config {
	return cluster.Config{Spec: spec, TimerLead: 300 * time.Millisecond, TimerAckWait: 2 * time.Second}
}

// details returns a call's details.
func details(id int64) call.Details {
	return call.Details{CallID: id, UserID: 7, SessionID: fmt.Sprintf("s-%d", id)}
}

// readAll returns every record the stream holds, whichever node appended
// it.
func readAll(t *testing.T, l *jetstream.Log) []eventlog.Record {
	t.Helper()
	last, err := l.Sync(context.Background())
	require.NoError(t, err)
	if last > 0 {
		require.NoError(t, l.Wait(context.Background(), last-1))
	}
	var out []eventlog.Record
	for from := uint64(1); ; {
		recs, err := l.Read(context.Background(), from, 4096)
		require.NoError(t, err)
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		from = recs[len(recs)-1].Seq + 1
	}
}

// lastByCall returns each call's last event name and timestamp.
func lastByCall(recs []eventlog.Record) map[int64]eventlog.Record {
	m := make(map[int64]eventlog.Record)
	for _, r := range recs {
		m[r.Event.CallID] = r
	}
	return m
}

// checkClean runs the replay checker on the log's records, in stream
// order, and requires no error finding.
func checkClean(t *testing.T, spec *fsm.Spec, recs []eventlog.Record) *check.Report {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		buf.Write(r.Event.AppendJSON(nil))
		buf.WriteByte('\n')
	}
	c, err := check.New(check.Config{Spec: spec})
	require.NoError(t, err)
	rep, err := c.Check(context.Background(), check.Input{Name: "stream", R: &buf})
	require.NoError(t, err)
	require.Zero(t, rep.Errors, "check found errors in the stream: %+v", rep.Rules)
	return rep
}

func TestLifecycleAcrossNodes(t *testing.T) {
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), cluster.Config{})
	b := startNode(t, s.ClientURL(), cluster.Config{})
	ctx := context.Background()

	d, err := a.eng.Create(ctx, call.Details{CallID: 42, UserID: 7})
	require.NoError(t, err)
	assert.NotEmpty(t, d.SessionID, "a session id is made when none is given")

	// Alternate nodes on every input: each must see the other's writes.
	steps := []struct {
		n    *node
		in   call.Input
		want fsm.State
	}{
		{b, call.Input{Trigger: fsm.Ring}, fsm.Ringing},
		{a, call.Input{Trigger: fsm.Accept}, fsm.Accepted},
		{b, call.Input{Trigger: fsm.Start}, fsm.Started},
		{a, call.Input{Trigger: fsm.End}, fsm.Successful},
	}
	for _, s := range steps {
		got, err := s.n.eng.Apply(ctx, 42, s.in)
		require.NoError(t, err, "%s", s.in.Trigger)
		assert.Equal(t, s.want, got)
	}

	// Errors are the single engine's.
	_, err = b.eng.Fire(ctx, 42, fsm.Ring)
	var ended *call.EndedError
	require.ErrorAs(t, err, &ended)
	assert.Equal(t, fsm.Successful, ended.State)
	_, err = a.eng.Fire(ctx, 43, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrUnknownCall)
	_, err = a.eng.Create(ctx, details(44))
	require.NoError(t, err)
	_, err = b.eng.Create(ctx, details(44))
	assert.ErrorIs(t, err, call.ErrCallExists, "a live call's id cannot be created again from another node")
	_, err = b.eng.Fire(ctx, 44, fsm.Accept)
	var illegal *call.TransitionError
	require.ErrorAs(t, err, &illegal)
	assert.Equal(t, fsm.Initiated, illegal.State)
	_, err = b.eng.Apply(ctx, 44, call.Input{Trigger: fsm.Timeout})
	assert.ErrorIs(t, err, call.ErrInvalidInput)
	_, err = b.eng.Apply(ctx, 999, call.Input{Trigger: fsm.Timeout})
	assert.ErrorIs(t, err, call.ErrUnknownCall, "an unknown call is named before a trigger no caller may fire, as by call.Engine")

	checkClean(t, fsm.Outgoing(), readAll(t, a.log))

	// An ended call's id may be reused at once, as on one engine (check
	// reports the new call's events as after-terminal).
	_, err = b.eng.Create(ctx, details(42))
	require.NoError(t, err)

	recs := readAll(t, a.log)
	names := []string{}
	for _, r := range recs {
		if r.Event.CallID == 42 {
			names = append(names, r.Event.Event)
		}
	}
	assert.Equal(t, []string{
		"popin_outgoing_call_initiated", "popin_outgoing_call_ringing", "popin_outgoing_call_accepted",
		"popin_outgoing_call_started", "popin_outgoing_call_successful", "popin_outgoing_call_initiated",
	}, names)
}

// TestRacesYieldOneTransition hits each of a thousand calls with two
// triggers at once from two nodes: exactly one transition each time,
// never two, never none, and the loser answers as one engine would.
func TestRacesYieldOneTransition(t *testing.T) {
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), cluster.Config{})
	b := startNode(t, s.ClientURL(), cluster.Config{})
	ctx := context.Background()
	const calls = 1000

	for i := range int64(calls) {
		id := i + 1
		_, err := a.eng.Create(ctx, details(id))
		require.NoError(t, err)
		_, err = b.eng.Fire(ctx, id, fsm.Ring)
		require.NoError(t, err)
	}
	type result struct {
		st  fsm.State
		err error
	}
	wins := map[fsm.Trigger]int{}
	for i := range int64(calls) {
		id := i + 1
		// Odd calls: two different triggers; even calls: the same one
		// twice (a retried request on two nodes).
		ta, tb := fsm.Accept, fsm.Decline
		if id%2 == 0 {
			tb = fsm.Accept
		}
		var ra, rb result
		var wg sync.WaitGroup
		wg.Go(func() { ra.st, ra.err = a.eng.Fire(ctx, id, ta) })
		wg.Go(func() { rb.st, rb.err = b.eng.Fire(ctx, id, tb) })
		wg.Wait()
		if (ra.err == nil) == (rb.err == nil) {
			t.Fatalf("call %d: %s → %v, %v; %s → %v, %v: want exactly one success", id, ta, ra.st, ra.err, tb, rb.st, rb.err)
		}
		loser := ra.err
		winner := ta
		if loser == nil {
			loser, winner = rb.err, tb
		}
		// From accepted, accept is illegal; from declined, the call ended.
		if !errors.Is(loser, call.ErrIllegalTransition) && !errors.Is(loser, call.ErrCallEnded) {
			t.Fatalf("call %d: the loser got %v, want an illegal transition or an ended call", id, loser)
		}
		wins[winner]++
	}
	t.Logf("winners: %v; conflicts seen: %d + %d", wins, a.eng.Stats().Conflicts, b.eng.Stats().Conflicts)

	recs := readAll(t, a.log)
	perCall := map[int64]int{}
	for _, r := range recs {
		perCall[r.Event.CallID]++
	}
	require.Len(t, perCall, calls)
	for id, n := range perCall {
		require.Equal(t, 3, n, "call %d: initiated, ringing and exactly one more event", id)
	}
	checkClean(t, fsm.Outgoing(), recs)
}

// TestTimeoutOnAnotherNode rings calls on a node that then dies: another
// node times them out, each stamped with its deadline.
func TestTimeoutOnAnotherNode(t *testing.T) {
	s := jstest.RunServer(t)
	spec := shortSpec(t)
	a := startNode(t, s.ClientURL(), fastTimers(spec))
	b := startNode(t, s.ClientURL(), fastTimers(spec))
	ctx := context.Background()
	const calls = 20
	for id := int64(1); id <= calls; id++ {
		_, err := a.eng.Create(ctx, details(id))
		require.NoError(t, err)
		_, err = a.eng.Fire(ctx, id, fsm.Ring)
		require.NoError(t, err)
	}
	a.stop()

	recs := eventlogtest.Follow(t, b.log, func(recs []eventlog.Record) bool {
		n := 0
		for _, r := range lastByCall(recs) {
			if r.Event.Event == "popin_outgoing_call_missed" {
				n++
			}
		}
		return n == calls
	})
	assertStampedWithDeadlines(t, spec, recs)
	// The surviving node applied every timeout (it counts each once its
	// append is acknowledged, which may come after the log shows it).
	pollUntil(t, func() bool { return b.eng.Stats().Timeouts == calls })
	checkClean(t, spec, recs)
}

// assertStampedWithDeadlines requires every timeout event to be stamped
// with its state's deadline: the previous event's timestamp plus the
// state's timeout.
func assertStampedWithDeadlines(t *testing.T, spec *fsm.Spec, recs []eventlog.Record) {
	t.Helper()
	prev := map[int64]eventlog.Record{}
	n := 0
	for _, r := range recs {
		if p, ok := prev[r.Event.CallID]; ok {
			from, _ := spec.StateOf(p.Event.Event)
			to, _ := spec.StateOf(r.Event.Event)
			if d, target, ok := spec.Timeout(from); ok && target == to {
				n++
				assert.Equal(t, p.Event.Timestamp+int64(d/time.Second), r.Event.Timestamp,
					"call %d: %s stamped %d, entered %s at %d", r.Event.CallID, to, r.Event.Timestamp, from, p.Event.Timestamp)
			}
		}
		prev[r.Event.CallID] = r
	}
	assert.NotZero(t, n, "no timeout event in the log")
}

// TestTimeoutsFireWhileNoNodeRuns stops every node while calls ring: the
// schedules fire into JetStream all the same, and the first node back
// applies them, stamped with their deadlines.
func TestTimeoutsFireWhileNoNodeRuns(t *testing.T) {
	s := jstest.RunServer(t)
	spec := shortSpec(t)
	a := startNode(t, s.ClientURL(), fastTimers(spec))
	ctx := context.Background()
	const calls = 10
	for id := int64(1); id <= calls; id++ {
		_, err := a.eng.Create(ctx, details(id))
		require.NoError(t, err)
		_, err = a.eng.Fire(ctx, id, fsm.Ring)
		require.NoError(t, err)
	}
	a.stop()

	// With no node running, wait until every call's timer has fired into
	// the consumer: JetStream holds them.
	nc := jstest.Connect(t, s.ClientURL())
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, "CALLFSM_TIMERS", "callfsm-timers")
	require.NoError(t, err)
	pollUntil(t, func() bool {
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		return info.NumPending+uint64(info.NumAckPending) >= calls
	})
	before := len(readAll(t, jetstreamLog(t, nc)))
	assert.Equal(t, 2*calls, before, "no timeout is applied while no node runs")

	b := startNode(t, s.ClientURL(), fastTimers(spec))
	recs := eventlogtest.Follow(t, b.log, func(recs []eventlog.Record) bool { return len(recs) == 3*calls })
	assertStampedWithDeadlines(t, spec, recs)
	checkClean(t, spec, recs)
}

// jetstreamLog opens the default log on nc, closed when the test ends.
func jetstreamLog(t *testing.T, nc *nats.Conn) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// pollUntil polls cond, for state only a server knows and tells no one,
// failing the test after 30 s.
func pollUntil(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("condition not met in 30 s")
		}
	}
}

// TestStaleTimerIsNoop fires a timer for a call that has left the timed
// state: nothing is appended and the timer is acknowledged.
func TestStaleTimerIsNoop(t *testing.T) {
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), cluster.Config{})
	ctx := context.Background()
	_, err := a.eng.Create(ctx, details(5))
	require.NoError(t, err)
	for _, tr := range []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start} {
		_, err := a.eng.Fire(ctx, 5, tr)
		require.NoError(t, err)
	}
	// A ringing timer long overdue, as a schedule would fire it.
	body := fmt.Sprintf(`{"call_id":5,"state":"ringing","deadline_ns":%d}`, time.Now().Add(-time.Minute).UnixNano())
	js, err := natsjs.New(a.nc)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "callfsm.timers.fired.5", []byte(body))
	require.NoError(t, err)

	cons, err := js.Consumer(ctx, "CALLFSM_TIMERS", "callfsm-timers")
	require.NoError(t, err)
	pollUntil(t, func() bool {
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		return info.AckFloor.Stream > 0 && info.NumAckPending == 0 && info.NumPending == 0
	})
	recs := readAll(t, a.log)
	require.Len(t, recs, 4)
	assert.Equal(t, "popin_outgoing_call_started", recs[3].Event.Event, "the stale timer applied nothing")
	assert.Zero(t, a.eng.Stats().Timeouts)
}

func TestConfigErrors(t *testing.T) {
	s := jstest.RunServer(t)
	nc := jstest.Connect(t, s.ClientURL())
	l := jetstreamLog(t, nc)
	for name, cfg := range map[string]cluster.Config{
		"no log":            {},
		"negative lead":     {Log: l, TimerLead: -time.Second},
		"lead over ackwait": {Log: l, TimerLead: 5 * time.Second, TimerAckWait: 2 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cluster.New(context.Background(), cfg)
			assert.Error(t, err)
		})
	}
}

// TestTimerFollowsTheCall checks the one-schedule-per-call design: a call
// that leaves a timed state for one with a later deadline is woken by the
// pending schedule, which re-arms for the new deadline; one that enters a
// state with an earlier deadline gets a schedule of its own. Either way
// the timeout is applied stamped with the state's own deadline.
func TestTimerFollowsTheCall(t *testing.T) {
	s := jstest.RunServer(t)
	for name, timeouts := range map[string]map[fsm.State]time.Duration{
		"later deadline: re-armed": {fsm.Initiated: time.Second, fsm.Ringing: 3 * time.Second},
		"earlier deadline: armed":  {fsm.Initiated: 4 * time.Second, fsm.Ringing: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			spec, err := fsm.Outgoing().WithTimeouts(timeouts)
			require.NoError(t, err)
			cfg := fastTimers(spec)
			cfg.TimerStream = "T" + fmt.Sprint(len(name))
			cfg.TimerSubjects = "timers" + fmt.Sprint(len(name))
			nc := jstest.Connect(t, s.ClientURL())
			l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc, Stream: "L" + fmt.Sprint(len(name)), Subjects: "calls" + fmt.Sprint(len(name))})
			require.NoError(t, err)
			t.Cleanup(func() { l.Close() })
			cfg.Log = l
			eng, err := cluster.New(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(func() { eng.Close() })

			ctx := context.Background()
			_, err = eng.Create(ctx, details(1))
			require.NoError(t, err)
			_, err = eng.Fire(ctx, 1, fsm.Ring)
			require.NoError(t, err)
			recs := eventlogtest.Follow(t, l, func(recs []eventlog.Record) bool { return len(recs) == 3 })
			assert.Equal(t, "popin_outgoing_call_missed", recs[2].Event.Event)
			assertStampedWithDeadlines(t, spec, recs)
			// The node counts the timeout once its append is acknowledged,
			// which may come after the log shows it.
			pollUntil(t, func() bool { return eng.Stats().Timeouts == 1 })
		})
	}
}

// TestCloseHandsHeldTimersOver closes the node that holds a call's fired
// timer: another node takes the timer at once and times the call out on
// time, rather than after the timer's AckWait.
func TestCloseHandsHeldTimersOver(t *testing.T) {
	t.Parallel()
	s := jstest.RunServer(t)
	spec := shortSpec(t)
	cfg := cluster.Config{Spec: spec, TimerLead: time.Second, TimerAckWait: 5 * time.Second}
	nodes := []*node{startNode(t, s.ClientURL(), cfg), startNode(t, s.ClientURL(), cfg)}
	ctx := context.Background()
	_, err := nodes[0].eng.Create(ctx, details(1))
	require.NoError(t, err)
	_, err = nodes[0].eng.Fire(ctx, 1, fsm.Ring)
	require.NoError(t, err)
	ringing, ok, err := nodes[0].log.LastFromLeader(ctx, 1)
	require.True(t, ok)
	require.NoError(t, err)

	// The schedule fires a second early into one node, which holds it.
	var holder, other *node
	pollUntil(t, func() bool {
		for i, n := range nodes {
			if n.eng.Stats().TimersHeld > 0 {
				holder, other = n, nodes[1-i]
				return true
			}
		}
		return false
	})
	holder.stop()

	eventlogtest.Follow(t, other.log, func(recs []eventlog.Record) bool {
		return len(recs) == 3
	})
	missed, ok, err := other.log.LastFromLeader(ctx, 1)
	require.True(t, ok)
	require.NoError(t, err)
	require.Equal(t, spec.EventName(fsm.Missed), missed.Event.Event)
	late := missed.Stored.Sub(ringing.Stored.Add(2 * time.Second))
	assert.Less(t, late, time.Second, "the call timed out %v after its deadline", late)
}

// TestTimedOutIntoATimedState: a timeout into a state that has a timeout
// of its own keeps its fired timer until the next state's schedule is
// stored, so that a schedule JetStream refused for a while is armed again
// and the call still times out.
func TestTimedOutIntoATimedState(t *testing.T) {
	t.Parallel()
	cfg := fsm.OutgoingConfig()
	for i, tr := range cfg.Transitions {
		if tr.From == fsm.Initiated && tr.Trigger == fsm.Timeout {
			cfg.Transitions[i].To = fsm.Ringing // ring by itself after a second
		}
	}
	cfg.Timeouts = map[fsm.State]time.Duration{fsm.Initiated: time.Second, fsm.Ringing: 3 * time.Second}
	spec, err := fsm.NewSpec(cfg)
	require.NoError(t, err)
	s := jstest.RunServer(t)
	ncfg := fastTimers(spec)
	ncfg.Logger = slog.New(slog.DiscardHandler) // the arm errors below are expected
	a := startNode(t, s.ClientURL(), ncfg)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(a.eng.Collector()))
	ctx := context.Background()
	_, err = a.eng.Create(ctx, details(1))
	require.NoError(t, err)

	// The timer stream stops taking schedules (fired timers still come):
	// the schedule of ringing, armed once the call times out into it,
	// fails.
	js, err := natsjs.New(a.nc)
	require.NoError(t, err)
	timers, err := js.Stream(ctx, "CALLFSM_TIMERS")
	require.NoError(t, err)
	scfg := timers.CachedInfo().Config
	subjects := scfg.Subjects
	scfg.Subjects = []string{"callfsm.timers.fired.>"}
	_, err = js.UpdateStream(ctx, scfg)
	require.NoError(t, err)
	pollUntil(t, func() bool { return gauge(t, reg, "callfsm_cluster_timer_arm_errors_total") > 0 })
	scfg.Subjects = subjects
	_, err = js.UpdateStream(ctx, scfg)
	require.NoError(t, err)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		last, ok, err := a.log.LastFromLeader(ctx, 1)
		require.NoError(t, err)
		if ok && last.Event.Event == spec.EventName(fsm.Missed) {
			break
		}
		if err := a.log.Wait(wctx, last.Seq); err != nil {
			t.Fatalf("the call did not time out of ringing: %v (it is %s)", err, last.Event.Event)
		}
	}
	assertStampedWithDeadlines(t, spec, callRecords(t, a.log, 1))
}

// gauge returns the value of the metric named name in reg, 0 if absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestNodeStartsOnFiredTimers starts a node while fired timers wait for
// one, timers of states their calls have left for states with later
// deadlines: the new node takes them at once and arms each call's next
// schedule. Nothing but the node's own work orders its start before its
// first timers (run with -race).
func TestNodeStartsOnFiredTimers(t *testing.T) {
	t.Parallel()
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{
		fsm.Initiated: time.Second, fsm.Ringing: 20 * time.Second,
	})
	require.NoError(t, err)
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), fastTimers(spec))
	ctx := context.Background()
	const calls = 20
	for id := int64(1); id <= calls; id++ {
		_, err := a.eng.Create(ctx, details(id))
		require.NoError(t, err)
		_, err = a.eng.Fire(ctx, id, fsm.Ring) // no schedule: ringing's deadline is later
		require.NoError(t, err)
	}
	a.stop()

	nc := jstest.Connect(t, s.ClientURL())
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, "CALLFSM_TIMERS", "callfsm-timers")
	require.NoError(t, err)
	timers, err := js.Stream(ctx, "CALLFSM_TIMERS")
	require.NoError(t, err)
	pollUntil(t, func() bool { // every initiated schedule has fired
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		return info.NumPending == calls
	})
	// Watch from a goroutine started before the node, so that the test
	// orders nothing between the node's start and its timers.
	rearmed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		tick := time.NewTicker(20 * time.Millisecond) // JetStream tells no one: poll
		defer tick.Stop()
		for {
			info, err := timers.Info(ctx, natsjs.WithSubjectFilter("callfsm.timers.sched.>"))
			if err == nil && len(info.State.Subjects) == calls && info.State.Msgs == calls {
				rearmed <- nil
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				rearmed <- fmt.Errorf("schedules: %v, %v", info, err)
				return
			}
		}
	}()
	startNode(t, s.ClientURL(), fastTimers(spec))
	require.NoError(t, <-rearmed, "every call's ringing schedule is armed")
}

// TestCreateOfALiveCallKeepsItsTimer creates, through a node without a
// cache, a call that is live: the optimistic append loses, the answer is
// call-exists, and the schedule the attempt replaced is re-armed, so the
// live call still times out stamped with its own deadline.
func TestCreateOfALiveCallKeepsItsTimer(t *testing.T) {
	s := jstest.RunServer(t)
	// The attempt's own schedule (initiated, 60 s) would time the ringing
	// call out nearly a minute late, were it not re-armed.
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{fsm.Initiated: time.Minute, fsm.Ringing: 2 * time.Second})
	require.NoError(t, err)
	a := startNode(t, s.ClientURL(), fastTimers(spec))
	cfg := fastTimers(spec)
	cfg.CacheSize = -1
	b := startNode(t, s.ClientURL(), cfg)
	ctx := context.Background()
	_, err = a.eng.Create(ctx, details(1))
	require.NoError(t, err)
	_, err = a.eng.Fire(ctx, 1, fsm.Ring)
	require.NoError(t, err)

	_, err = b.eng.Create(ctx, details(1))
	require.ErrorIs(t, err, call.ErrCallExists)
	assert.Positive(t, b.eng.Stats().Conflicts, "the optimistic append lost")

	recs := eventlogtest.Follow(t, a.log, func(recs []eventlog.Record) bool { return len(recs) == 3 })
	assert.Equal(t, "popin_outgoing_call_missed", recs[2].Event.Event)
	assertStampedWithDeadlines(t, spec, recs)
}
