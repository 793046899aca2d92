package cluster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/fsm"
)

// stallTail stops n's log tail at the next record it sees (after the
// engine's cache took it), until the test ends: n's cache then lags
// behind the stream, as a busy node's may.
func stallTail(t *testing.T, n *node) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	n.log.OnTail(func(jetstream.Head) { <-gate })
	t.Cleanup(func() { once.Do(func() { close(gate) }) }) // before the node stops
}

// TestStaleCacheAnswersAsTheLeader: a node whose cache lags answers an
// input as the single engine would from the call's real state, not with
// an error its stale copy would give.
func TestStaleCacheAnswersAsTheLeader(t *testing.T) {
	t.Parallel()
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), cluster.Config{})
	b := startNode(t, s.ClientURL(), cluster.Config{})
	ctx := context.Background()
	_, err := a.eng.Create(ctx, details(1))
	require.NoError(t, err)
	for _, tr := range []fsm.Trigger{fsm.Ring, fsm.Accept} {
		_, err := a.eng.Fire(ctx, 1, tr)
		require.NoError(t, err)
	}
	stallTail(t, a)
	_, err = b.eng.Create(ctx, details(2)) // a's tail stops here
	require.NoError(t, err)
	_, err = b.eng.Fire(ctx, 1, fsm.Cancel) // which a's cache does not see
	require.NoError(t, err)

	for name, in := range map[string]call.Input{
		"network_failure without a participant": {Trigger: fsm.NetFailure},
		"start with a participant":              {Trigger: fsm.Start, Participant: "user"},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := a.eng.Apply(ctx, 1, in)
			var ended *call.EndedError
			require.ErrorAs(t, err, &ended, "the call was cancelled on node b")
			assert.Equal(t, fsm.Abandoned, ended.State)
			assert.Equal(t, fsm.Abandoned, st)
		})
	}
}

// TestStaleCacheKeepsTheEarlierTimer: a node whose cache lags must not
// replace the schedule of the call's real state with a later one of the
// state its stale copy would enter.
func TestStaleCacheKeepsTheEarlierTimer(t *testing.T) {
	t.Parallel()
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{
		fsm.Initiated: 20 * time.Second, fsm.Ringing: 10 * time.Second, fsm.Accepted: time.Second,
	})
	require.NoError(t, err)
	s := jstest.RunServer(t)
	a := startNode(t, s.ClientURL(), fastTimers(spec))
	b := startNode(t, s.ClientURL(), fastTimers(spec))
	ctx := context.Background()
	_, err = a.eng.Create(ctx, details(1))
	require.NoError(t, err)
	stallTail(t, a)
	_, err = b.eng.Create(ctx, details(2)) // a's tail stops here
	require.NoError(t, err)
	// Each state's deadline comes before the previous one's: b arms a
	// schedule for each, the last one second after the call is accepted.
	for _, tr := range []fsm.Trigger{fsm.Ring, fsm.Accept} {
		_, err := b.eng.Fire(ctx, 1, tr)
		require.NoError(t, err)
	}
	// a still sees the call initiated: ring is legal there, and ringing's
	// deadline, ten seconds away, comes before initiated's.
	_, err = a.eng.Fire(ctx, 1, fsm.Ring)
	require.ErrorIs(t, err, call.ErrIllegalTransition, "the call is accepted")

	// The accepted call times out one second after it was accepted, not
	// when a's ringing schedule would fire.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for last := b.log.LastSeq(); ; last++ {
		if err := b.log.Wait(wctx, last); err != nil {
			t.Fatalf("the accepted call did not time out within 5 s: %v", err)
		}
		recs, err := b.log.Read(ctx, last+1, 1)
		require.NoError(t, err)
		if len(recs) == 1 && recs[0].Event.CallID == 1 && recs[0].Event.Event == spec.EventName(fsm.NetworkFailure) {
			assertStampedWithDeadlines(t, spec, callRecords(t, b.log, 1))
			return
		}
	}
}

// callRecords returns call id's records, in stream order.
func callRecords(t *testing.T, l *jetstream.Log, id int64) []eventlog.Record {
	t.Helper()
	var out []eventlog.Record
	for _, r := range readAll(t, l) {
		if r.Event.CallID == id {
			out = append(out, r)
		}
	}
	return out
}
