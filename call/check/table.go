package check

import (
	"context"
	"fmt"
	"strings"

	lfsm "github.com/looplab/fsm"

	"github.com/callfsm/callfsm/fsm"
)

// noState marks an event name that is not the spec's.
const noState = 0xFF

// Edge bits of table.edge, for a pair of states (from, to).
const (
	edgeLegal   = 1 << iota // some trigger leads from to to
	edgeTimeout             // the timeout trigger does
	edgeOther               // a trigger other than the timeout does
)

// table is a lifecycle compiled for the checker: states as small integers,
// and a dense from×to table of which state may follow which, asked of the
// spec's own looplab/fsm machines at start-up.
type table struct {
	spec        *fsm.Spec
	states      []fsm.State
	names       []string // event name per state
	byName      map[string]uint8
	initial     uint8
	terminal    []bool
	participant []bool
	edge        []uint8   // n*n, by from*n + to
	timeout     []float64 // seconds, 0 when the state has no timeout or it is off
	timeoutTo   []int     // the timeout trigger's target, -1 if none
	timeoutOff  []bool    // the state has a timeout transition, switched off
	expected    []string  // per state, the events that may follow it, for messages
	partNames   string    // the participant states' events, for messages
}

// triggers returns every trigger of the spec, in table order.
func triggers(spec *fsm.Spec) []fsm.Trigger {
	var out []fsm.Trigger
	seen := map[fsm.Trigger]bool{}
	for _, tr := range spec.Transitions() {
		if !seen[tr.Trigger] {
			seen[tr.Trigger] = true
			out = append(out, tr.Trigger)
		}
	}
	return out
}

// next asks a looplab machine of the spec, set to from, where trigger
// leads.
func next(m *lfsm.FSM, from fsm.State, trigger fsm.Trigger) (fsm.State, bool) {
	m.SetState(string(from))
	if !m.Can(string(trigger)) {
		return "", false
	}
	if err := m.Event(context.Background(), string(trigger)); err != nil {
		return "", false
	}
	return fsm.State(m.Current()), true
}

func compile(spec *fsm.Spec) (*table, error) {
	states := spec.States()
	n := len(states)
	if n >= noState {
		return nil, fmt.Errorf("lifecycle %q has %d states; the checker handles at most %d", spec.Name(), n, noState-1)
	}
	t := &table{
		spec: spec, states: states, names: make([]string, n), byName: make(map[string]uint8, n),
		terminal: make([]bool, n), participant: make([]bool, n), edge: make([]uint8, n*n),
		timeout: make([]float64, n), timeoutTo: make([]int, n), timeoutOff: make([]bool, n),
		expected: make([]string, n),
	}
	index := make(map[fsm.State]int, n)
	for i, st := range states {
		index[st] = i
		t.names[i] = spec.EventName(st)
		t.byName[t.names[i]] = uint8(i)
		t.terminal[i] = spec.Terminal(st)
		t.participant[i] = spec.NeedsParticipant(st)
		t.timeoutTo[i] = -1
		if st == spec.Initial() {
			t.initial = uint8(i)
		}
		if d, _, ok := spec.Timeout(st); ok {
			t.timeout[i] = d.Seconds()
		}
	}
	m := spec.NewFSM(spec.Initial())
	for i, from := range states {
		for _, tr := range triggers(spec) {
			to, ok := next(m, from, tr)
			if !ok {
				continue
			}
			j, known := index[to]
			if !known {
				return nil, fmt.Errorf("looplab machine leads %s --%s--> %q, not a state of the spec", from, tr, to)
			}
			bit := uint8(edgeOther)
			if tr == fsm.Timeout {
				bit = edgeTimeout
				t.timeoutTo[i] = j
				t.timeoutOff[i] = t.timeout[i] == 0
			}
			t.edge[i*n+j] |= edgeLegal | bit
		}
		var exp []string
		for j := range states {
			if t.edge[i*n+j]&edgeLegal != 0 {
				exp = append(exp, t.names[j])
			}
		}
		t.expected[i] = orList(exp)
	}
	var parts []string
	for i := range states {
		if t.participant[i] {
			parts = append(parts, t.names[i])
		}
	}
	t.partNames = orList(parts)
	return t, nil
}

// orList joins "a, b or c".
func orList(items []string) string {
	switch len(items) {
	case 0:
		return "nothing"
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// legal reports whether to may follow from.
func (t *table) legal(from, to uint8) bool {
	return t.edge[int(from)*len(t.states)+int(to)]&edgeLegal != 0
}

// timeoutOnly reports whether only from's timeout leads to to.
func (t *table) timeoutOnly(from, to uint8) bool {
	return t.edge[int(from)*len(t.states)+int(to)]&(edgeTimeout|edgeOther) == edgeTimeout
}
