package simulate_test

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/simulate"
	"github.com/callfsm/callfsm/fsm"
)

// The oracle is an independent, small replay checker written from the rule
// table of the replay-checker issue (#4), for the rules simulated logs can
// break. It exists to test the simulator's truth file without depending on
// package call/check. Where the table can be read two ways, reading says
// which way; the simulator only injects faults whose findings are the same
// under every reading, and the tests run them all.
type reading struct {
	// timingOnIllegal: the timing rules (overdue, early-timeout) are also
	// evaluated for an event that is an illegal transition.
	timingOnIllegal bool
	// enterAtLatest: a state counts as entered at the latest timestamp of
	// the call rather than at the event's own.
	enterAtLatest bool
	// overdueAtEqual: at the end of input, a deadline + 1 s equal to the
	// latest timestamp is already overdue.
	overdueAtEqual bool
}

func readings() []reading {
	var out []reading
	for i := range 8 {
		out = append(out, reading{i&1 != 0, i&2 != 0, i&4 != 0})
	}
	return out
}

type finding struct {
	Line   int64
	CallID int64
	Rule   simulate.Rule
}

func (f finding) String() string { return fmt.Sprintf("%d/%d/%s", f.Line, f.CallID, f.Rule) }

type oracleCall struct {
	state    fsm.State
	ended    bool
	enter    int64
	latest   int64
	lastLine int64
	first    event.Event
	seen     map[string]bool
}

// parsed is a log read once, for the oracle to replay under each reading.
type parsed struct {
	raw []string
	evs []event.Event
}

func parse(log []byte) (*parsed, error) {
	p := &parsed{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		ev, err := event.Decode(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		p.raw = append(p.raw, sc.Text())
		p.evs = append(p.evs, ev)
	}
	return p, sc.Err()
}

// oracle replays a log and returns its findings, sorted by line then rule,
// and how many calls it saw.
func oracle(spec *fsm.Spec, log *parsed, rd reading) ([]finding, int, error) {
	var out []finding
	calls := map[int64]*oracleCall{}
	var order []int64
	var maxTS int64
	byInput, byTimeout := map[fsm.State]bool{}, map[fsm.State]bool{}
	next := map[[2]fsm.State]bool{}
	for _, tr := range spec.Transitions() {
		next[[2]fsm.State{tr.From, tr.To}] = true
		if tr.Trigger == fsm.Timeout {
			byTimeout[tr.To] = true
		} else {
			byInput[tr.To] = true
		}
	}
	timeoutOnly := func(st fsm.State) bool { return byTimeout[st] && !byInput[st] }
	legal := func(from, to fsm.State) bool { return next[[2]fsm.State{from, to}] }
	for i, ev := range log.evs {
		line, raw := int64(i+1), log.raw[i]
		st, ok := spec.StateOf(ev.Event)
		if !ok {
			return nil, 0, fmt.Errorf("line %d: unknown event %q", line, ev.Event)
		}
		maxTS = max(maxTS, ev.Timestamp)
		add := func(r simulate.Rule) { out = append(out, finding{line, ev.CallID, r}) }
		c := calls[ev.CallID]
		if c != nil {
			c.lastLine = line
			if c.seen[raw] {
				add(simulate.RuleDuplicate)
				continue
			}
		}
		if c == nil {
			c = &oracleCall{state: st, enter: ev.Timestamp, latest: ev.Timestamp, lastLine: line, first: ev,
				seen: map[string]bool{raw: true}, ended: spec.Terminal(st)}
			calls[ev.CallID] = c
			order = append(order, ev.CallID)
			if st != spec.Initial() {
				add(simulate.RuleNoInitiated)
			}
			continue
		}
		c.seen[raw] = true
		if c.ended {
			add("after-terminal")
			continue
		}
		isLegal := legal(c.state, st)
		if !isLegal {
			add(simulate.RuleIllegalTransition)
		}
		if ev.Timestamp < c.latest {
			add(simulate.RuleTimeBackwards)
		}
		if isLegal || rd.timingOnIllegal {
			if d, to, timed := spec.Timeout(c.state); timed {
				secs := int64(d / time.Second)
				if st == to && timeoutOnly(st) && ev.Timestamp < c.enter+secs-1 {
					add("early-timeout")
				}
				if st != to && ev.Timestamp > c.enter+secs+1 {
					add(simulate.RuleOverdue)
				}
			}
		}
		first := c.first
		first.Event, first.Participant, first.Timestamp = ev.Event, ev.Participant, ev.Timestamp
		if !reflect.DeepEqual(first, ev) {
			add("identity-mismatch")
		}
		if spec.NeedsParticipant(st) != (ev.Participant != "") {
			add("bad-participant")
		}
		c.state, c.ended = st, spec.Terminal(st)
		c.enter = ev.Timestamp
		if rd.enterAtLatest {
			c.enter = max(c.latest, ev.Timestamp)
		}
		c.latest = max(c.latest, ev.Timestamp)
	}
	for _, id := range order {
		c := calls[id]
		if c.ended {
			continue
		}
		rule := simulate.RuleIncomplete
		if d, _, timed := spec.Timeout(c.state); timed {
			deadline := c.enter + int64(d/time.Second)
			if deadline+1 < maxTS || rd.overdueAtEqual && deadline+1 == maxTS {
				rule = simulate.RuleOverdue
			}
		}
		out = append(out, finding{c.lastLine, id, rule})
	}
	sortFindings(out)
	return out, len(calls), nil
}

func sortFindings(fs []finding) {
	slices.SortFunc(fs, func(a, b finding) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Rule, b.Rule))
	})
}

func truthFindings(recs []simulate.TruthRecord) []finding {
	out := make([]finding, len(recs))
	for i, r := range recs {
		out[i] = finding{r.Line, r.CallID, r.Rule}
	}
	sortFindings(out)
	return out
}
