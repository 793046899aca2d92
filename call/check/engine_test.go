package check

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check/checktest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// What the engine writes is legal: no finding, every call counted, the
// outcomes the engine reached.
func TestEngineLogsAreClean(t *testing.T) {
	t.Parallel()
	log, st := engineLog(t, checktest.Config{Calls: 2000, Concurrent: 300, Seed: 1})
	rep := check(t, log)
	assert.Empty(t, rep.Findings)
	assert.Equal(t, st.Events, rep.Events)
	assert.Equal(t, st.Calls, rep.Calls)
	for state, n := range st.Outcomes {
		assert.Equal(t, n, rep.Outcomes[string(state)], "%s", state)
	}
	assert.Positive(t, rep.Outcomes["missed"], "some calls time out")
	assert.Positive(t, rep.TimeInState["ringing"].Calls)
}

// A custom lifecycle checks its own logs: the engine run with a 45 s ring
// timeout is clean against that spec, and breaks the default one.
func TestCustomSpec(t *testing.T) {
	t.Parallel()
	spec := mustTimeouts(t, map[fsm.State]time.Duration{fsm.Ringing: 45 * time.Second, fsm.Initiated: 0})
	log, _ := engineLog(t, checktest.Config{Spec: spec, Calls: 1000, Seed: 2})
	assert.Empty(t, run(t, Config{Spec: spec}, "log", log).Findings)
	rep := check(t, log)
	assert.Positive(t, rep.Rules[RuleOverdue], "calls ring for more than 30 s")
	assert.Zero(t, rep.Rules[RuleEarlyTimeout])
}

func TestUnfinishedCallsAreIncomplete(t *testing.T) {
	t.Parallel()
	log, st := engineLog(t, checktest.Config{Calls: 50, Seed: 5, StopEarly: true})
	require.Positive(t, st.Live)
	rep := check(t, log)
	assert.Equal(t, st.Live, rep.Incomplete)
	assert.Equal(t, st.Live, rep.Warnings)
	assert.Zero(t, rep.Errors)
}

// Dropping one event gives a finding or two, unless the spec allows the
// call's events without it (ringing, accepted, started is legal without
// accepted); repeating a line gives one duplicate.
func TestEngineLogMutations(t *testing.T) {
	t.Parallel()
	spec := fsm.Outgoing()
	log, _ := engineLog(t, checktest.Config{Calls: 200, Concurrent: 20, Seed: 6})
	ls := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	evs := make([]event.Event, len(ls))
	for i, l := range ls {
		var err error
		evs[i], err = event.Decode([]byte(l))
		require.NoError(t, err)
	}
	// skippable reports whether the call of line i is legal without it:
	// the states before and after it follow each other.
	skippable := func(i int) bool {
		var before, after fsm.State
		for j := i - 1; j >= 0 && before == ""; j-- {
			if evs[j].CallID == evs[i].CallID {
				before, _ = spec.StateOf(evs[j].Event)
			}
		}
		for j := i + 1; j < len(evs) && after == ""; j++ {
			if evs[j].CallID == evs[i].CallID {
				after, _ = spec.StateOf(evs[j].Event)
			}
		}
		if before == "" || after == "" {
			return false
		}
		for _, tr := range spec.Allowed(before) {
			if to, _ := spec.Next(before, tr); to == after {
				return true
			}
		}
		return false
	}
	detected := 0
	for i := 0; i < len(ls); i += 7 {
		dropped := lines(append(append([]string{}, ls[:i]...), ls[i+1:]...)...)
		rep := check(t, dropped)
		if skippable(i) {
			assert.Zero(t, rep.Errors+rep.Warnings, "line %d dropped: %v", i+1, rep.Findings)
		} else {
			detected++
			require.NotEmpty(t, rep.Findings, "line %d dropped", i+1)
			assert.LessOrEqual(t, rep.Errors, 2, "line %d dropped: %v", i+1, rep.Findings)
		}

		doubled := lines(append(append([]string{}, ls[:i+1]...), ls[i:]...)...)
		rep = check(t, doubled)
		assert.Equal(t, []got{{i + 2, RuleDuplicate}}, reduce(rep.Findings))
	}
	assert.Greater(t, detected, len(ls)/7/2, "most dropped events are detected")
}
