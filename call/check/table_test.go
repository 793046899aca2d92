package check

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/fsm"
)

// The dense table and looplab/fsm agree on every state × trigger pair, and
// on every pair of states: to is a legal successor of from exactly when
// some trigger of a fresh looplab machine in from leads to it.
func TestTableAgreesWithLooplab(t *testing.T) {
	t.Parallel()
	for _, spec := range []*fsm.Spec{fsm.Outgoing(), mustTimeouts(t, map[fsm.State]time.Duration{fsm.Ringing: 0})} {
		tab, err := compile(spec)
		require.NoError(t, err)
		states := spec.States()
		pairs := 0
		for i, from := range states {
			successors := map[fsm.State]map[fsm.Trigger]bool{}
			for _, tr := range triggers(spec) {
				m := spec.NewFSM(from)
				err := m.Event(context.Background(), string(tr))
				want, specOK := spec.Next(from, tr)
				if err != nil {
					assert.False(t, specOK, "%s --%s--> looplab refuses, the spec has %s", from, tr, want)
					continue
				}
				to := fsm.State(m.Current())
				assert.Equal(t, want, to, "%s --%s-->", from, tr)
				if successors[to] == nil {
					successors[to] = map[fsm.Trigger]bool{}
				}
				successors[to][tr] = true
			}
			for j, to := range states {
				pairs++
				via := successors[to]
				assert.Equal(t, len(via) > 0, tab.legal(uint8(i), uint8(j)), "legal(%s, %s)", from, to)
				assert.Equal(t, len(via) == 1 && via[fsm.Timeout], tab.timeoutOnly(uint8(i), uint8(j)), "timeoutOnly(%s, %s)", from, to)
			}
		}
		assert.Equal(t, len(states)*len(states), pairs)
	}
}

func TestTimeoutOnlyTargets(t *testing.T) {
	t.Parallel()
	tab, err := compile(fsm.Outgoing())
	require.NoError(t, err)
	idx := func(st fsm.State) uint8 { return tab.byName[tab.spec.EventName(st)] }
	assert.True(t, tab.timeoutOnly(idx(fsm.Ringing), idx(fsm.Missed)), "missed is reached from ringing only by the timeout")
	assert.False(t, tab.timeoutOnly(idx(fsm.Initiated), idx(fsm.CustomerUnavailable)), "unavailable leads there too")
	assert.False(t, tab.timeoutOnly(idx(fsm.Accepted), idx(fsm.NetworkFailure)), "network_failure leads there too")
	assert.Equal(t, 30.0, tab.timeout[idx(fsm.Ringing)])
	assert.Zero(t, tab.timeout[idx(fsm.Started)])
	assert.Equal(t, "popin_outgoing_call_accepted, popin_outgoing_call_started, popin_outgoing_call_missed, "+
		"popin_outgoing_call_abandoned or popin_outgoing_call_declined", tab.expected[idx(fsm.Ringing)])
}
