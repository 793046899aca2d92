package fsm_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/fsm"
)

// Every path of the Popin lifecycle, written out by hand from the issue's
// table: 4 from initiated straight to an end, and 10 through ringing.
var outgoingPaths = []string{
	"initiated -busy-> busy",
	"initiated -cancel-> abandoned",
	"initiated -ring-> ringing -accept-> accepted -cancel-> abandoned",
	"initiated -ring-> ringing -accept-> accepted -network_failure-> network_failure",
	"initiated -ring-> ringing -accept-> accepted -start-> started -end-> successful",
	"initiated -ring-> ringing -accept-> accepted -start-> started -network_failure-> network_failure",
	"initiated -ring-> ringing -accept-> accepted -timeout-> network_failure",
	"initiated -ring-> ringing -cancel-> abandoned",
	"initiated -ring-> ringing -decline-> declined",
	"initiated -ring-> ringing -start-> started -end-> successful",
	"initiated -ring-> ringing -start-> started -network_failure-> network_failure",
	"initiated -ring-> ringing -timeout-> missed",
	"initiated -timeout-> customer_unavailable",
	"initiated -unavailable-> customer_unavailable",
}

func pathStrings(ps []fsm.Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// requireWellFormed checks that p is a walk of spec from its initial state
// to a terminal state, through legal transitions only.
func requireWellFormed(t *testing.T, spec *fsm.Spec, p fsm.Path) {
	t.Helper()
	require.NotEmpty(t, p)
	assert.Equal(t, spec.Initial(), p[0].From, p.String())
	for i, tr := range p {
		to, ok := spec.Next(tr.From, tr.Trigger)
		require.True(t, ok, "%s: step %d is not a transition", p, i)
		assert.Equal(t, to, tr.To, "%s: step %d", p, i)
		if i > 0 {
			assert.Equal(t, p[i-1].To, tr.From, "%s: step %d does not follow on", p, i)
		}
		assert.Equal(t, i == len(p)-1, spec.Terminal(tr.To), "%s: only the last state is terminal", p)
	}
}

func TestOutgoingPaths(t *testing.T) {
	spec := fsm.Outgoing()
	paths := spec.Paths()
	require.Equal(t, outgoingPaths, pathStrings(paths))
	ends := map[fsm.State]bool{}
	for _, p := range paths {
		requireWellFormed(t, spec, p)
		ends[p.End()] = true
		seen := map[fsm.State]bool{}
		for _, st := range p.States() {
			assert.False(t, seen[st], "%s enters %s twice", p, st)
			seen[st] = true
		}
	}
	assert.Len(t, ends, len(spec.TerminalStates()), "every terminal state ends some path")
}

func TestPathAccessors(t *testing.T) {
	p := fsm.Outgoing().Paths()[11]
	assert.Equal(t, "initiated -ring-> ringing -timeout-> missed", p.String())
	assert.Equal(t, []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Missed}, p.States())
	assert.Equal(t, []fsm.Trigger{fsm.Ring, fsm.Timeout}, p.Triggers())
	assert.Equal(t, fsm.Missed, p.End())
	var empty fsm.Path
	assert.Empty(t, empty.String())
	assert.Nil(t, empty.States())
	assert.Equal(t, fsm.State(""), empty.End())
}

// shortestThrough is the length of the shortest path that takes tr, by
// brute force over every path (the outgoing lifecycle is acyclic, so every
// path is simple).
func shortestThrough(paths []fsm.Path, tr fsm.Transition) int {
	best := -1
	for _, p := range paths {
		for _, x := range p {
			if x.From == tr.From && x.Trigger == tr.Trigger && (best < 0 || len(p) < best) {
				best = len(p)
			}
		}
	}
	return best
}

func TestOutgoingCoveringPaths(t *testing.T) {
	spec := fsm.Outgoing()
	cover := spec.CoveringPaths()
	all := spec.Paths()
	taken := map[string]bool{}
	for _, p := range cover {
		requireWellFormed(t, spec, p)
		assert.Contains(t, outgoingPaths, p.String())
		for _, tr := range p {
			taken[string(tr.From)+"/"+string(tr.Trigger)] = true
		}
	}
	for _, tr := range spec.Transitions() {
		assert.True(t, taken[string(tr.From)+"/"+string(tr.Trigger)], "no covering path takes %s -%s->", tr.From, tr.Trigger)
	}
	// Each path is the shortest way through the first transition (in table
	// order) that no earlier path had taken.
	seen := map[string]bool{}
	for _, p := range cover {
		var reason *fsm.Transition
		for _, tr := range spec.Transitions() {
			if !seen[string(tr.From)+"/"+string(tr.Trigger)] {
				reason = &tr
				break
			}
		}
		require.NotNil(t, reason, "%s covers nothing new", p)
		assert.Equal(t, shortestThrough(all, *reason), len(p), "%s is not a shortest path through %s -%s->", p, reason.From, reason.Trigger)
		for _, tr := range p {
			seen[string(tr.From)+"/"+string(tr.Trigger)] = true
		}
	}
	assert.Less(t, len(cover), len(all), "a covering set is smaller than every path")
}

// A lifecycle with a cycle (hold and resume) and a switched-off timeout:
// paths enter no state twice, and no path takes the dead timeout.
func TestPathsCycleAndSwitchedOffTimeout(t *testing.T) {
	spec, err := fsm.NewSpec(fsm.Config{
		Name: "hold", EventPrefix: "x_", Initial: "dialing",
		States:   []fsm.State{"dialing", "talking", "held", "done", "lost"},
		Terminal: []fsm.State{"done", "lost"},
		Transitions: []fsm.Transition{
			{From: "dialing", Trigger: "answer", To: "talking"},
			{From: "dialing", Trigger: fsm.Timeout, To: "lost"},
			{From: "talking", Trigger: "hold", To: "held"},
			{From: "talking", Trigger: "hangup", To: "done"},
			{From: "held", Trigger: "resume", To: "talking"},
			{From: "held", Trigger: fsm.Timeout, To: "lost"},
		},
		Timeouts: map[fsm.State]time.Duration{"dialing": 0, "held": time.Minute},
	})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"dialing -answer-> talking -hangup-> done",
		"dialing -answer-> talking -hold-> held -timeout-> lost",
	}, pathStrings(spec.Paths()))
	cover := pathStrings(spec.CoveringPaths())
	assert.Equal(t, []string{
		"dialing -answer-> talking -hangup-> done",
		"dialing -answer-> talking -hold-> held -timeout-> lost",
		"dialing -answer-> talking -hold-> held -resume-> talking -hangup-> done",
	}, cover, "the cycle is covered; the switched-off timeout is not")
}

func ExampleSpec_Paths() {
	spec := fsm.Outgoing()
	for _, p := range spec.Paths() {
		if p.End() == fsm.Missed || p.End() == fsm.Successful {
			fmt.Println(p)
		}
	}
	fmt.Println(len(spec.Paths()), "paths")
	// Output:
	// initiated -ring-> ringing -accept-> accepted -start-> started -end-> successful
	// initiated -ring-> ringing -start-> started -end-> successful
	// initiated -ring-> ringing -timeout-> missed
	// 14 paths
}

func ExampleSpec_CoveringPaths() {
	spec := fsm.Outgoing()
	cover := spec.CoveringPaths()
	fmt.Println(len(cover), "paths take all", len(spec.Transitions()), "transitions; the first three:")
	for _, p := range cover[:3] {
		fmt.Println(p.Triggers())
	}
	// Output:
	// 13 paths take all 16 transitions; the first three:
	// [busy]
	// [cancel]
	// [ring cancel]
}
