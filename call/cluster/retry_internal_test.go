package cluster

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/fsm"
)

// TestRetriedAppendWasMade: a replicated stream's leader answers a retried
// publish of an append it stored as a duplicate, whatever the call's last
// event is by then (it checks message ids before the expected sequence).
// The attempt was made: tryAppend must count it so, not as a lost race
// after which Apply would apply its input again to the call's new state.
func TestRetriedAppendWasMade(t *testing.T) {
	t.Parallel()
	servers := jstest.RunCluster(t, 3)
	nc := jstest.Connect(t, jstest.ClusterURLs(servers))
	ctx := context.Background()
	l, err := jetstream.Open(ctx, jetstream.Config{Conn: nc, Replicas: 3})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	e, err := New(ctx, Config{Log: l})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })

	d, err := e.Create(ctx, call.Details{CallID: 1, UserID: 7})
	require.NoError(t, err)
	created, ok, err := l.LastFromLeader(ctx, 1)
	require.True(t, ok)
	require.NoError(t, err)
	ring := call.NewEvent(e.spec, &d, fsm.Ringing, "", created.Event.Timestamp)
	// The append tryAppend tries next was stored by a first publish whose
	// answer was lost (nats.go publishes again after "no responders", as
	// during a leader election)...
	mid := e.attemptID(1, created.Seq, string(fsm.Ring), e.requests.Load()+1)
	rang, _, err := l.AppendIf(ctx, ring, created.Seq, mid)
	require.NoError(t, err)
	// ... and another node moved the call on since.
	_, _, err = l.AppendIf(ctx, call.NewEvent(e.spec, &d, fsm.Accepted, "", ring.Timestamp), rang, "another node")
	require.NoError(t, err)

	h, err := e.tryAppend(ctx, ring, created.Seq, string(fsm.Ring))
	require.NoError(t, err, "the append was made")
	assert.Equal(t, rang, h.Seq)
	assert.Equal(t, uint64(2), e.transitions.Load(), "the create and the ring")
	assert.Zero(t, e.conflicts.Load())
}
