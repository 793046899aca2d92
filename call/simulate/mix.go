package simulate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Mix gives each outcome (a terminal state) its share of the calls. Shares
// are weights: they need not add up to 100, and an outcome left out gets
// none.
type Mix map[fsm.State]float64

// DefaultMix returns the mix used when none is given:
// successful=60,missed=15,declined=8,busy=5,abandoned=5,customer_unavailable=4,network_failure=3.
func DefaultMix() Mix {
	return Mix{
		fsm.Successful: 60, fsm.Missed: 15, fsm.Declined: 8, fsm.Busy: 5,
		fsm.Abandoned: 5, fsm.CustomerUnavailable: 4, fsm.NetworkFailure: 3,
	}
}

// ErrInvalidConfig is the kind of every error New, ParseMix and ParseFaults
// return.
var ErrInvalidConfig = errors.New("simulate: invalid configuration")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// ParseMix reads a mix written OUTCOME=SHARE,…, e.g.
// "successful=60,missed=15,declined=8". Whether each outcome belongs to the
// lifecycle is checked by New.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	err := parsePairs(s, "mix", func(k string, v float64) error {
		if _, dup := m[fsm.State(k)]; dup {
			return fmt.Errorf("outcome %q given twice", k)
		}
		m[fsm.State(k)] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// String writes the mix as ParseMix reads it, outcomes sorted by name.
func (m Mix) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(m[fsm.State(k)], 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// parsePairs reads KEY=NUMBER,… with finite, non-negative numbers.
func parsePairs(s, what string, set func(k string, v float64) error) error {
	if strings.TrimSpace(s) == "" {
		return invalidf("%s: empty, want KEY=NUMBER,…", what)
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return invalidf("%s: %q: want KEY=NUMBER", what, part)
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return invalidf("%s: %s=%q: not a number", what, k, v)
		}
		if x < 0 {
			return invalidf("%s: %s=%v: negative", what, k, x)
		}
		if err := set(k, x); err != nil {
			return invalidf("%s: %v", what, err)
		}
	}
	return nil
}

// step is one input of a variant: a trigger (with its participant), or the
// state's timeout, which the engine fires.
type step struct {
	trigger     fsm.Trigger
	participant event.Participant
}

// variant is one way a call reaches its outcome, with its weight among the
// outcome's variants (per mille).
type variant struct {
	outcome fsm.State
	weight  int64
	steps   []step
}

func steps(ts ...fsm.Trigger) []step {
	out := make([]step, len(ts))
	for i, t := range ts {
		out[i] = step{trigger: t}
	}
	return out
}

func withParticipant(s []step, p event.Participant) []step {
	s[len(s)-1].participant = p
	return s
}

// variants are the ways calls of the Popin lifecycle end, and how often
// each happens among calls with that outcome. Together they take every path
// of the lifecycle, every network_failure participant and auto-answer
// (ringing → started); TestVariantsTakeEveryPath holds them to it.
var variants = []variant{
	{fsm.Successful, 880, steps(fsm.Ring, fsm.Accept, fsm.Start, fsm.End)},
	{fsm.Successful, 120, steps(fsm.Ring, fsm.Start, fsm.End)}, // auto-answer
	{fsm.Missed, 1000, steps(fsm.Ring, fsm.Timeout)},
	{fsm.Declined, 1000, steps(fsm.Ring, fsm.Decline)},
	{fsm.Busy, 1000, steps(fsm.BusySignal)},
	{fsm.Abandoned, 250, steps(fsm.Cancel)},
	{fsm.Abandoned, 600, steps(fsm.Ring, fsm.Cancel)},
	{fsm.Abandoned, 150, steps(fsm.Ring, fsm.Accept, fsm.Cancel)},
	{fsm.CustomerUnavailable, 700, steps(fsm.Unavailable)},
	{fsm.CustomerUnavailable, 300, steps(fsm.Timeout)},
	{fsm.NetworkFailure, 250, withParticipant(steps(fsm.Ring, fsm.Accept, fsm.Start, fsm.NetFailure), event.User)},
	{fsm.NetworkFailure, 250, withParticipant(steps(fsm.Ring, fsm.Accept, fsm.Start, fsm.NetFailure), event.Agent)},
	{fsm.NetworkFailure, 50, withParticipant(steps(fsm.Ring, fsm.Start, fsm.NetFailure), event.User)},
	{fsm.NetworkFailure, 50, withParticipant(steps(fsm.Ring, fsm.Start, fsm.NetFailure), event.Agent)},
	{fsm.NetworkFailure, 120, withParticipant(steps(fsm.Ring, fsm.Accept, fsm.NetFailure), event.User)},
	{fsm.NetworkFailure, 120, withParticipant(steps(fsm.Ring, fsm.Accept, fsm.NetFailure), event.Agent)},
	{fsm.NetworkFailure, 160, steps(fsm.Ring, fsm.Accept, fsm.Timeout)}, // participant user, by the spec
}

// dwell is how long a call stays in a state before an input moves it on, by
// state and trigger, in milliseconds. A draw for a timed state is cut to
// stay before its deadline.
var dwell = map[fsm.State]map[fsm.Trigger]dist{
	fsm.Initiated: {
		fsm.Ring:        uniform(200, 3_000),
		fsm.BusySignal:  uniform(500, 4_000),
		fsm.Unavailable: uniform(1_000, 8_000),
		fsm.Cancel:      uniform(1_000, 12_000),
	},
	fsm.Ringing: {
		fsm.Accept:  {{0, 1_500}, {500_000, 6_000}, {900_000, 14_000}, {million, 26_000}},
		fsm.Start:   uniform(300, 2_500),
		fsm.Decline: {{0, 2_000}, {600_000, 7_000}, {million, 24_000}},
		fsm.Cancel:  {{0, 3_000}, {500_000, 10_000}, {million, 27_000}},
	},
	fsm.Accepted: {
		fsm.Start:      uniform(200, 3_500),
		fsm.Cancel:     uniform(1_000, 15_000),
		fsm.NetFailure: uniform(500, 20_000),
	},
	fsm.Started: {
		// talk time: median 100 s, one call in a hundred over 16 minutes
		fsm.End: {{0, 8_000}, {100_000, 25_000}, {250_000, 50_000}, {500_000, 100_000}, {750_000, 190_000},
			{900_000, 340_000}, {970_000, 620_000}, {990_000, 1_000_000}, {million, 2_400_000}},
		fsm.NetFailure: {{0, 3_000}, {500_000, 45_000}, {900_000, 200_000}, {million, 900_000}},
	},
}
