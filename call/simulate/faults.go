package simulate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Fault is a kind of fault injected into the emitted stream.
type Fault string

// The faults. Each is injected at most once per call, only where the
// findings of the replay checker (callfsm check) are exactly predictable;
// docs/simulate.md lists the rules.
const (
	// FaultDuplicate redelivers an event: the same line again, right after
	// the original. Finding: duplicate on the copy.
	FaultDuplicate Fault = "duplicate"
	// FaultReorder swaps two consecutive events of a call (neither its
	// first nor its last): the earlier one is delivered right after the
	// later. Findings: illegal-transition where the order breaks the
	// lifecycle, time-backwards on the late event if its timestamp is older.
	FaultReorder Fault = "reorder"
	// FaultDrop loses an event. Finding: no-initiated on the next event if
	// it was the first; overdue or incomplete at the call's last line if it
	// was the last; otherwise illegal-transition on the next event.
	FaultDrop Fault = "drop"
	// FaultIllegal inserts, right after an event, an event the lifecycle
	// does not allow there (a live state, not a successor). Findings:
	// illegal-transition on it, and on the next event unless that one is a
	// legal successor of the inserted state.
	FaultIllegal Fault = "illegal"
)

// faultKinds is the order in which faults are drawn.
var faultKinds = [...]Fault{FaultDuplicate, FaultReorder, FaultDrop, FaultIllegal}

// Rule is the id of a rule of the replay checker (package call/check,
// callfsm check) that a fault triggers.
type Rule string

// The checker's rules that injected faults trigger.
const (
	RuleDuplicate         Rule = "duplicate"
	RuleNoInitiated       Rule = "no-initiated"
	RuleIllegalTransition Rule = "illegal-transition"
	RuleTimeBackwards     Rule = "time-backwards"
	RuleOverdue           Rule = "overdue"
	RuleIncomplete        Rule = "incomplete"
)

var ruleCodes = [...]Rule{"", RuleDuplicate, RuleNoInitiated, RuleIllegalTransition, RuleTimeBackwards, RuleOverdue, RuleIncomplete}

// rule is a Rule as a small code: an index into ruleCodes.
type rule uint8

const (
	noRule rule = iota
	rDuplicate
	rNoInitiated
	rIllegal
	rTimeBackwards
	rOverdue
	rIncomplete
)

// rules holds the findings one line must yield: at most two.
type rules [2]rule

func (r *rules) add(x rule) {
	if r[0] == noRule {
		r[0] = x
	} else {
		r[1] = x
	}
}

// Faults gives each fault's rate: the expected share of emitted events it
// hits, from 0 to 1. A call gets at most one fault, and only where its
// findings are exactly predictable, so a few fewer are injected than the
// rates ask; Summary.Faults counts them.
type Faults struct {
	Duplicate, Reorder, Drop, Illegal float64
}

// ParseFaults reads rates written KIND=RATE,…, e.g.
// "duplicate=0.01,reorder=0.005,drop=0.005,illegal=0.002". Kinds left out
// have rate 0.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	seen := map[string]bool{}
	err := parsePairs(s, "faults", func(k string, v float64) error {
		if seen[k] {
			return fmt.Errorf("%q given twice", k)
		}
		seen[k] = true
		p := f.rate(Fault(k))
		if p == nil {
			return fmt.Errorf("unknown fault %q (want duplicate, reorder, drop or illegal)", k)
		}
		*p = v
		return nil
	})
	return f, err
}

func (f *Faults) rate(k Fault) *float64 {
	switch k {
	case FaultDuplicate:
		return &f.Duplicate
	case FaultReorder:
		return &f.Reorder
	case FaultDrop:
		return &f.Drop
	case FaultIllegal:
		return &f.Illegal
	}
	return nil
}

// String writes the rates as ParseFaults reads them.
func (f Faults) String() string {
	var parts []string
	for _, k := range faultKinds {
		if r := *f.rate(k); r != 0 {
			parts = append(parts, string(k)+"="+strconv.FormatFloat(r, 'g', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}

func (f Faults) validate() error {
	for _, k := range faultKinds {
		if r := *f.rate(k); math.IsNaN(r) || r < 0 || r > 1 {
			return invalidf("faults: %s=%v: want a rate from 0 to 1", k, r)
		}
	}
	return nil
}

// ppb returns the rates in parts per billion, for integer draws.
func (f Faults) ppb() [len(faultKinds)]int64 {
	var out [len(faultKinds)]int64
	for i, k := range faultKinds {
		out[i] = int64(math.Round(*f.rate(k) * 1e9))
	}
	return out
}

// maxEvents bounds the events of one planned call.
const maxEvents = 8

// planned is one event a call's plan makes the engine emit.
type planned struct {
	state   int   // index in the lifecycle's states
	at      int64 // nanoseconds after the simulation's start
	ts      int64 // its timestamp, Unix seconds
	timeout bool  // entered by a timeout
}

// injection is the fault a call gets, and the findings it must yield.
type injection struct {
	kind  Fault // "" for none
	pos   int   // the event it is about
	state int   // FaultIllegal: the inserted event's state
	// at[j] are the findings on the line of planned event j; extra the
	// findings on the added line (the copy, the inserted event, or the
	// event delivered late).
	at    [maxEvents]rules
	extra rules
}

// lifecycle is what fault planning knows of the spec, by state index.
type lifecycle struct {
	spec        *fsm.Spec
	states      []fsm.State
	names       []string // event names
	quoted      [][]byte // event names as JSON strings
	initial     int
	terminal    []bool
	participant []bool
	timeout     []time.Duration // 0: untimed
	timeoutOnly []bool          // every way in is a timeout
	succ        [][]bool        // succ[a][b]: some transition leads from a to b
}

func newLifecycle(spec *fsm.Spec) *lifecycle {
	l := &lifecycle{spec: spec, states: spec.States()}
	n := len(l.states)
	index := make(map[fsm.State]int, n)
	for i, st := range l.states {
		index[st] = i
	}
	l.initial = index[spec.Initial()]
	l.names = make([]string, n)
	l.quoted = make([][]byte, n)
	l.terminal = make([]bool, n)
	l.participant = make([]bool, n)
	l.timeout = make([]time.Duration, n)
	l.timeoutOnly = make([]bool, n)
	l.succ = make([][]bool, n)
	byInput := make([]bool, n)
	for i, st := range l.states {
		l.names[i] = spec.EventName(st)
		l.quoted[i] = quoteName(l.names[i])
		l.terminal[i] = spec.Terminal(st)
		l.participant[i] = spec.NeedsParticipant(st)
		if d, _, ok := spec.Timeout(st); ok {
			l.timeout[i] = d
		}
		l.succ[i] = make([]bool, n)
	}
	for _, tr := range spec.Transitions() {
		from, to := index[tr.From], index[tr.To]
		l.succ[from][to] = true
		if tr.Trigger == fsm.Timeout {
			l.timeoutOnly[to] = true
		} else {
			byInput[to] = true
		}
	}
	for i := range l.timeoutOnly {
		l.timeoutOnly[i] = l.timeoutOnly[i] && !byInput[i]
	}
	return l
}

// quoteName returns an event name encoded as event.Event.AppendJSON
// encodes it.
func quoteName(name string) []byte {
	e := event.Event{Event: name}
	b := e.AppendJSON(nil)
	return b[len(eventKey):bytes.Index(b, sessionKey)]
}

// inTime reports whether a call that entered state st at timestamp enter may
// leave it at timestamp leave without the checker's overdue rule firing
// under any reading of it (no slack used).
func (l *lifecycle) inTime(st int, enter, leave int64) bool {
	d := l.timeout[st]
	return d == 0 || leave*int64(time.Second) <= enter*int64(time.Second)+int64(d)
}

// faultPlanner decides each call's fault from its planned events.
type faultPlanner struct {
	l    *lifecycle
	ppb  [len(faultKinds)]int64
	any  bool
	last int64 // the last arrival's timestamp: no line of the output is older
}

// plan draws the call's fault, if any, and the findings it must yield.
// Positions where a fault's findings could not be predicted exactly are not
// eligible; if the drawn kind has none, the call gets no fault.
func (fp *faultPlanner) plan(rng *rand.Rand, ev []planned, inj *injection) {
	*inj = injection{}
	if !fp.any {
		return
	}
	n := int64(len(ev))
	u := rng.Int64N(1e9)
	kind := -1
	var cum int64
	for k, r := range fp.ppb {
		cum += r * n
		if u < cum {
			kind = k
			break
		}
	}
	if kind < 0 {
		return
	}
	var cands [maxEvents * 16]injection
	found := fp.eligible(faultKinds[kind], ev, cands[:0])
	if len(found) == 0 {
		return
	}
	*inj = found[rng.IntN(len(found))]
}

// eligible appends every injection of kind the call's events allow, with
// the findings each must yield.
func (fp *faultPlanner) eligible(kind Fault, ev []planned, out []injection) []injection {
	l := fp.l
	n := len(ev)
	switch kind {
	case FaultDuplicate:
		// Any event but the last: a copy of the terminal event could be
		// read as after-terminal as well as duplicate.
		for i := range n - 1 {
			inj := injection{kind: kind, pos: i}
			inj.extra.add(rDuplicate)
			out = append(out, inj)
		}

	case FaultDrop:
		for i := range n {
			inj := injection{kind: kind, pos: i}
			switch {
			case i == 0:
				// The next event is the call's first: no-initiated, and the
				// call starts in its state at its real time.
				if ev[1].timeout {
					continue
				}
				inj.at[1].add(rNoInitiated)
			case i == n-1:
				// The call never ends: at the end of input it is overdue if
				// its state is timed (its deadline is well before the last
				// arrival, so before the latest timestamp of the log),
				// otherwise incomplete; both at its last line.
				st := ev[n-2].state
				if d := l.timeout[st]; d > 0 {
					if (ev[n-2].ts+2)*int64(time.Second)+int64(d) >= fp.last*int64(time.Second) {
						continue // too near the end of the log to say
					}
					inj.at[n-2].add(rOverdue)
				} else {
					inj.at[n-2].add(rIncomplete)
				}
			default:
				// The next event comes while the call is still in the
				// state before the lost one: it must be illegal there
				// (else nothing is found), not a timeout's event, and in
				// time for that state's deadline.
				prev, next := ev[i-1], ev[i+1]
				if l.succ[prev.state][next.state] || next.timeout || !l.inTime(prev.state, prev.ts, next.ts) {
					continue
				}
				inj.at[i+1].add(rIllegal)
			}
			out = append(out, inj)
		}

	case FaultReorder:
		// Events i and i+1, both neither first nor last, are delivered
		// i+1 then i: the checker sees states s(i-1), s(i+1), s(i), s(i+2).
		for i := 1; i+2 < n; i++ {
			a, b, c := ev[i], ev[i+1], ev[i+2]
			prev := ev[i-1]
			if a.timeout || b.timeout || l.timeoutOnly[c.state] ||
				!l.inTime(prev.state, prev.ts, b.ts) || !l.inTime(a.state, a.ts, c.ts) {
				continue
			}
			inj := injection{kind: kind, pos: i}
			if !l.succ[prev.state][b.state] {
				inj.at[i+1].add(rIllegal)
			}
			if !l.succ[b.state][a.state] {
				inj.extra.add(rIllegal)
			}
			if a.ts < b.ts {
				inj.extra.add(rTimeBackwards)
			}
			if !l.succ[a.state][c.state] {
				inj.at[i+2].add(rIllegal)
			}
			if inj.extra == (rules{}) && inj.at[i+1] == (rules{}) && inj.at[i+2] == (rules{}) {
				continue
			}
			out = append(out, inj)
		}

	case FaultIllegal:
		// After event i (a live state), an event for a live state x that is
		// not a successor: not the initial state (a second initiated reads
		// as a new call), no participant, not entered only by timeouts, not
		// equal to an event the call has at that timestamp (it would be a
		// duplicate), and left in time by the next event.
		for i := 0; i+1 < n; i++ {
			cur, next := ev[i], ev[i+1]
			if l.timeoutOnly[next.state] {
				continue
			}
			for x := range l.states {
				if l.terminal[x] || x == l.initial || l.participant[x] || l.timeoutOnly[x] ||
					x == cur.state || l.succ[cur.state][x] || !l.inTime(x, cur.ts, next.ts) || seenAt(ev, x, cur.ts) {
					continue
				}
				inj := injection{kind: kind, pos: i, state: x}
				inj.extra.add(rIllegal)
				if !l.succ[x][next.state] {
					inj.at[i+1].add(rIllegal)
				}
				out = append(out, inj)
			}
		}
	}
	return out
}

// seenAt reports whether the call has an event for state st at timestamp ts.
func seenAt(ev []planned, st int, ts int64) bool {
	for _, e := range ev {
		if e.state == st && e.ts == ts {
			return true
		}
	}
	return false
}
