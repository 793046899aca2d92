package cluster_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/fsm"
)

// TestReplicatedClusterSurvivesAServer runs two nodes on a three-server
// JetStream cluster with three replicas and stops one server mid-traffic:
// no acknowledged transition is lost and traffic goes on.
func TestReplicatedClusterSurvivesAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds to form")
	}
	servers := jstest.RunCluster(t, 3)
	urls := jstest.ClusterURLs(servers)
	ctx := context.Background()
	startReplicated := func() *node {
		nc := jstest.Connect(t, urls)
		l, err := jetstream.Open(ctx, jetstream.Config{Conn: nc, Replicas: 3, Timeout: 10 * time.Second})
		require.NoError(t, err)
		eng, err := cluster.New(ctx, cluster.Config{Log: l})
		require.NoError(t, err)
		n := &node{nc: nc, log: l, eng: eng}
		t.Cleanup(n.stop)
		return n
	}
	nodes := []*node{startReplicated(), startReplicated()}

	// Each worker drives its own calls through both nodes in turn and
	// records every transition acknowledged to it.
	var acked sync.Map // call_id → []fsm.State acknowledged, in order
	var stopped atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	var afterStop atomic.Int64
	stop := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := next.Add(1)
				var states []fsm.State
				if _, err := nodes[(w+i)%2].eng.Create(ctx, details(id)); err != nil {
					continue // not acknowledged: not in the record
				}
				states = append(states, fsm.Initiated)
				for j, tr := range []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End} {
					st, err := nodes[(w+i+j+1)%2].eng.Fire(ctx, id, tr)
					if err != nil {
						var emit *call.EmitError
						if !errors.As(err, &emit) {
							t.Errorf("call %d: %s: %v", id, tr, err)
						}
						break
					}
					states = append(states, st)
				}
				acked.Store(id, states)
				if stopped.Load() && len(states) == 5 {
					afterStop.Add(1)
				}
			}
		})
	}
	// Stop one server once traffic flows, then let traffic go on.
	waitCalls := func(n int64) {
		pollUntil(t, func() bool { return next.Load() >= n })
	}
	waitCalls(200)
	servers[2].Shutdown()
	servers[2].WaitForShutdown()
	stopped.Store(true)
	at := next.Load()
	waitCalls(at + 300)
	close(stop)
	wg.Wait()
	assert.Positive(t, afterStop.Load(), "calls completed after the server stopped")

	// Every acknowledged transition is in the stream, in order.
	recs := readAll(t, nodes[0].log)
	got := map[int64][]string{}
	for _, r := range recs {
		got[r.Event.CallID] = append(got[r.Event.CallID], r.Event.Event)
	}
	spec := fsm.Outgoing()
	n := 0
	acked.Range(func(k, v any) bool {
		id, states := k.(int64), v.([]fsm.State)
		events := got[id]
		require.GreaterOrEqual(t, len(events), len(states), "call %d: acknowledged %v, stream has %v", id, states, events)
		for i, st := range states {
			require.Equal(t, spec.EventName(st), events[i], "call %d", id)
		}
		n += len(states)
		return true
	})
	t.Logf("%d acknowledged transitions, %d after one of three servers stopped; stream holds %d events", n, afterStop.Load(), len(recs))
	checkClean(t, spec, recs)
}
