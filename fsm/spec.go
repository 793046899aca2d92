// Package fsm describes a call lifecycle as data: its states, the triggers
// that move a call between them, the timeouts that fire on their own, and the
// event each state's entry emits.
//
// A Spec is built once from a Config, validated, and shared by every call;
// each call's machine is a github.com/looplab/fsm FSM made from it
// (Spec.NewFSM). The Popin outgoing-call lifecycle is Outgoing; users build
// others (an incoming-call lifecycle, another event prefix, other timeouts)
// with NewSpec.
//
// The package knows the lifecycle and nothing else: no calls, no clocks, no
// events on the wire.
package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	lfsm "github.com/looplab/fsm"
)

// State is a state of the lifecycle, e.g. "ringing".
type State string

// Trigger is an input that moves a call from one state to another, e.g.
// "ring". The trigger Timeout is fired by the engine when a state's timeout
// elapses, never by users.
type Trigger string

// The states of the Popin outgoing-call lifecycle.
const (
	Initiated           State = "initiated"
	Ringing             State = "ringing"
	Accepted            State = "accepted"
	Started             State = "started"
	Successful          State = "successful"
	Missed              State = "missed"
	Abandoned           State = "abandoned"
	NetworkFailure      State = "network_failure"
	Declined            State = "declined"
	Busy                State = "busy"
	CustomerUnavailable State = "customer_unavailable"
)

// The triggers of the Popin outgoing-call lifecycle.
const (
	Ring        Trigger = "ring"
	Accept      Trigger = "accept"
	Start       Trigger = "start"
	End         Trigger = "end"
	Cancel      Trigger = "cancel"
	Decline     Trigger = "decline"
	BusySignal  Trigger = "busy"
	Unavailable Trigger = "unavailable"
	NetFailure  Trigger = "network_failure"
	// Timeout is the trigger the engine fires when a state's timeout elapses.
	Timeout Trigger = "timeout"
)

// Transition is one row of a lifecycle's table: in state From, trigger
// Trigger moves the call to state To.
type Transition struct {
	From    State
	Trigger Trigger
	To      State
	// Participant, when set, is the participant the entered state's event
	// carries for this transition (the accepted-state timeout is a network
	// failure on the user's side). It is only allowed into a participant
	// state.
	Participant string
}

// Config is the definition of a lifecycle, validated by NewSpec.
type Config struct {
	// Name names the lifecycle in errors and diagrams, e.g. "popin-outgoing".
	Name string
	// EventPrefix is prepended to a state's name to make the event its entry
	// emits: "popin_outgoing_call_" + "ringing".
	EventPrefix string
	// Initial is the state a new call is created in.
	Initial State
	// States lists every state, live and terminal, in the order documents
	// show them.
	States []State
	// Terminal lists the states in which a call has ended.
	Terminal []State
	// ParticipantStates lists the states whose event carries a participant
	// ("user" or "agent"); entering one needs a participant.
	ParticipantStates []State
	// Transitions is the whole table; nothing else is legal.
	Transitions []Transition
	// Timeouts gives the time a call may stay in a state before the engine
	// fires Timeout. A state needs a Timeout transition to have one; a zero
	// or absent duration switches that timeout off.
	Timeouts map[State]time.Duration
}

// ErrInvalidSpec is the kind of every error NewSpec returns.
var ErrInvalidSpec = errors.New("invalid lifecycle spec")

// SpecError lists everything wrong with a Config.
type SpecError struct {
	Name     string
	Problems []string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("invalid lifecycle spec %q: %s", e.Name, strings.Join(e.Problems, "; "))
}

// Unwrap returns ErrInvalidSpec.
func (e *SpecError) Unwrap() error { return ErrInvalidSpec }

// Spec is a validated lifecycle. It is immutable and safe for concurrent
// use; build one with NewSpec or Outgoing.
type Spec struct {
	name        string
	prefix      string
	initial     State
	states      []State
	index       map[State]int // position in states
	terminal    []bool        // by state index
	participant []bool        // by state index
	transitions []Transition  // sorted by From (in states order), then Trigger
	next        []map[Trigger]int
	allowed     [][]Trigger // sorted, by state index
	timeouts    []time.Duration
	timeoutTo   []int // state index a timeout leads to, -1 if none
	byEvent     map[string]State
	eventNames  map[State]string // prefix + state, made once
	events      lfsm.Events      // shared by every FSM built from the spec
	pool        sync.Pool        // of *lfsm.FSM, see AcquireFSM
}

// NewSpec validates cfg and builds a Spec. Every problem found is reported
// in one *SpecError (errors.Is ErrInvalidSpec): unknown, duplicate or
// unreachable states, a live state with no path to a terminal one, a
// terminal state with exits, a trigger defined twice from one state, a self
// loop, and timeouts on states without a Timeout transition.
func NewSpec(cfg Config) (*Spec, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	s := &Spec{name: cfg.Name, prefix: cfg.EventPrefix, initial: cfg.Initial, index: make(map[State]int)}
	if cfg.EventPrefix == "" {
		add("event prefix is empty")
	}
	for _, st := range cfg.States {
		switch _, dup := s.index[st]; {
		case st == "":
			add("a state has an empty name")
		case dup:
			add("state %q is listed twice", st)
		default:
			s.index[st] = len(s.states)
			s.states = append(s.states, st)
		}
	}
	n := len(s.states)
	s.terminal = make([]bool, n)
	s.participant = make([]bool, n)
	s.next = make([]map[Trigger]int, n)
	s.allowed = make([][]Trigger, n)
	s.timeouts = make([]time.Duration, n)
	s.timeoutTo = make([]int, n)
	for i := range s.timeoutTo {
		s.timeoutTo[i] = -1
		s.next[i] = make(map[Trigger]int)
	}
	known := func(st State, what string) (int, bool) {
		i, ok := s.index[st]
		if !ok {
			add("%s state %q is not in States", what, st)
		}
		return i, ok
	}
	for _, st := range cfg.Terminal {
		if i, ok := known(st, "terminal"); ok {
			s.terminal[i] = true
		}
	}
	for _, st := range cfg.ParticipantStates {
		if i, ok := known(st, "participant"); ok {
			s.participant[i] = true
		}
	}
	ini, iniOK := known(cfg.Initial, "initial")
	if iniOK && s.terminal[ini] {
		add("initial state %q is terminal", cfg.Initial)
	}
	if !slices.Contains(s.terminal, true) {
		add("no terminal state")
	}

	for _, tr := range cfg.Transitions {
		from, ok1 := known(tr.From, "source")
		to, ok2 := known(tr.To, "target")
		if tr.Trigger == "" {
			add("transition %s -> %s has no trigger", tr.From, tr.To)
			continue
		}
		if !ok1 || !ok2 {
			continue
		}
		if s.terminal[from] {
			add("terminal state %q has an exit (%s -> %s)", tr.From, tr.Trigger, tr.To)
			continue
		}
		if from == to {
			add("self loop %s --%s--> %s", tr.From, tr.Trigger, tr.To)
			continue
		}
		if _, dup := s.next[from][tr.Trigger]; dup {
			add("trigger %q is defined twice from %q", tr.Trigger, tr.From)
			continue
		}
		if tr.Participant != "" && !s.participant[to] {
			add("transition %s --%s--> %s sets a participant but %q is not a participant state", tr.From, tr.Trigger, tr.To, tr.To)
		}
		s.next[from][tr.Trigger] = to
		s.transitions = append(s.transitions, tr)
		if tr.Trigger == Timeout {
			s.timeoutTo[from] = to
		}
	}
	for st, d := range cfg.Timeouts {
		i, ok := known(st, "timeout")
		switch {
		case !ok:
		case d < 0:
			add("timeout of %q is negative (%v)", st, d)
		case d > 0 && s.timeoutTo[i] < 0:
			add("state %q has a timeout but no %q transition", st, Timeout)
		default:
			s.timeouts[i] = d
		}
	}
	if iniOK && len(problems) == 0 {
		problems = append(problems, s.checkGraph(ini)...)
	}
	if len(problems) > 0 {
		return nil, &SpecError{Name: cfg.Name, Problems: problems}
	}

	slices.SortStableFunc(s.transitions, func(a, b Transition) int {
		if c := s.index[a.From] - s.index[b.From]; c != 0 {
			return c
		}
		return strings.Compare(string(a.Trigger), string(b.Trigger))
	})
	s.byEvent = make(map[string]State, n)
	s.eventNames = make(map[State]string, n)
	for i, st := range s.states {
		s.byEvent[s.prefix+string(st)] = st
		s.eventNames[st] = s.prefix + string(st)
		for tr := range s.next[i] {
			s.allowed[i] = append(s.allowed[i], tr)
		}
		slices.Sort(s.allowed[i])
	}
	for _, tr := range s.transitions {
		s.events = append(s.events, lfsm.EventDesc{Name: string(tr.Trigger), Src: []string{string(tr.From)}, Dst: string(tr.To)})
	}
	s.pool.New = func() any { return s.NewFSM(s.initial) }
	return s, nil
}

// checkGraph reports unreachable states and live states from which no
// terminal state can be reached.
func (s *Spec) checkGraph(initial int) []string {
	var problems []string
	n := len(s.states)
	reach := make([]bool, n)
	stack := []int{initial}
	reach[initial] = true
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range s.next[i] {
			if !reach[j] {
				reach[j] = true
				stack = append(stack, j)
			}
		}
	}
	ends := slices.Clone(s.terminal)
	for changed := true; changed; {
		changed = false
		for i := range n {
			if ends[i] {
				continue
			}
			for _, j := range s.next[i] {
				if ends[j] {
					ends[i], changed = true, true
					break
				}
			}
		}
	}
	for i, st := range s.states {
		if !reach[i] {
			problems = append(problems, fmt.Sprintf("state %q is unreachable from %q", st, s.states[initial]))
		} else if !ends[i] {
			problems = append(problems, fmt.Sprintf("live state %q has no path to a terminal state", st))
		}
	}
	return problems
}

// Name returns the lifecycle's name.
func (s *Spec) Name() string { return s.name }

// Initial returns the state a new call starts in.
func (s *Spec) Initial() State { return s.initial }

// States returns every state, in the Config's order.
func (s *Spec) States() []State { return slices.Clone(s.states) }

// Has reports whether st is a state of the lifecycle.
func (s *Spec) Has(st State) bool { _, ok := s.index[st]; return ok }

// Terminal reports whether st is a terminal state. Unknown states are not.
func (s *Spec) Terminal(st State) bool {
	i, ok := s.index[st]
	return ok && s.terminal[i]
}

// TerminalStates returns the terminal states, in the Config's order.
func (s *Spec) TerminalStates() []State {
	var out []State
	for i, st := range s.states {
		if s.terminal[i] {
			out = append(out, st)
		}
	}
	return out
}

// NeedsParticipant reports whether entering st needs a participant.
func (s *Spec) NeedsParticipant(st State) bool {
	i, ok := s.index[st]
	return ok && s.participant[i]
}

// Next returns the state trigger leads to from st, and whether the
// transition exists.
func (s *Spec) Next(st State, trigger Trigger) (State, bool) {
	i, ok := s.index[st]
	if !ok {
		return "", false
	}
	j, ok := s.next[i][trigger]
	if !ok {
		return "", false
	}
	return s.states[j], true
}

// Allowed returns the triggers legal in st, sorted. It is nil for terminal
// and unknown states. The slice is shared: do not modify it.
func (s *Spec) Allowed(st State) []Trigger {
	i, ok := s.index[st]
	if !ok {
		return nil
	}
	return s.allowed[i]
}

// Transitions returns the whole table, by source state then trigger.
func (s *Spec) Transitions() []Transition { return slices.Clone(s.transitions) }

// Transition returns the table row for trigger in st.
func (s *Spec) Transition(st State, trigger Trigger) (Transition, bool) {
	for _, tr := range s.transitions {
		if tr.From == st && tr.Trigger == trigger {
			return tr, true
		}
	}
	return Transition{}, false
}

// Timeout returns how long a call may stay in st before Timeout fires, and
// the state it then enters. ok is false when st has no timeout or it is
// switched off.
func (s *Spec) Timeout(st State) (d time.Duration, to State, ok bool) {
	i, found := s.index[st]
	if !found || s.timeouts[i] == 0 {
		return 0, "", false
	}
	return s.timeouts[i], s.states[s.timeoutTo[i]], true
}

// EventName returns the name of the event entering st emits, e.g.
// "popin_outgoing_call_ringing".
func (s *Spec) EventName(st State) string {
	if name, ok := s.eventNames[st]; ok {
		return name
	}
	return s.prefix + string(st)
}

// StateOf returns the state whose entry emits the named event.
func (s *Spec) StateOf(event string) (State, bool) {
	st, ok := s.byEvent[event]
	return st, ok
}

// Config returns a copy of the definition the spec was built from, with
// Transitions in table order. Changing it and calling NewSpec derives
// another lifecycle.
func (s *Spec) Config() Config {
	cfg := Config{
		Name: s.name, EventPrefix: s.prefix, Initial: s.initial,
		States: s.States(), Terminal: s.TerminalStates(), Transitions: s.Transitions(),
		Timeouts: make(map[State]time.Duration),
	}
	for i, st := range s.states {
		if s.participant[i] {
			cfg.ParticipantStates = append(cfg.ParticipantStates, st)
		}
		if s.timeoutTo[i] >= 0 {
			cfg.Timeouts[st] = s.timeouts[i]
		}
	}
	return cfg
}

// WithTimeouts returns a copy of the spec with the given timeouts changed; a
// zero duration switches one off. Other states keep theirs.
func (s *Spec) WithTimeouts(timeouts map[State]time.Duration) (*Spec, error) {
	cfg := s.Config()
	for st, d := range timeouts {
		cfg.Timeouts[st] = d
	}
	return NewSpec(cfg)
}

// NewFSM returns a new looplab/fsm machine for the lifecycle, in state
// current. Its events are the spec's triggers; it has no callbacks.
func (s *Spec) NewFSM(current State) *lfsm.FSM {
	return lfsm.NewFSM(string(current), s.events, nil)
}

// AcquireFSM returns a machine of the lifecycle set to state current, taken
// from a pool the spec keeps so that calls reuse the machines of calls that
// ended. Give it back with ReleaseFSM when the call ends.
func (s *Spec) AcquireFSM(current State) *lfsm.FSM {
	m := s.pool.Get().(*lfsm.FSM)
	m.SetState(string(current))
	return m
}

// ReleaseFSM puts a machine obtained from AcquireFSM back in the pool. The
// caller must not use it afterwards.
func (s *Spec) ReleaseFSM(m *lfsm.FSM) { s.pool.Put(m) }
