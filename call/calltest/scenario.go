package calltest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Step is one step of a scenario: an input to the call, or a wait.
type Step struct {
	// Trigger is the input's trigger; empty for a wait.
	Trigger fsm.Trigger
	// Participant goes with a trigger that enters a participant state
	// (network_failure:user).
	Participant event.Participant
	// Wait is how long the clock advances, for a wait.
	Wait time.Duration
}

// String returns the step as Parse reads it: "ring", "network_failure:agent"
// or "wait:31s".
func (s Step) String() string {
	switch {
	case s.Trigger == "":
		return "wait:" + s.Wait.String()
	case s.Participant != "":
		return string(s.Trigger) + ":" + string(s.Participant)
	default:
		return string(s.Trigger)
	}
}

// Scenario is what happens to one call after it is created: inputs and
// waits, in order.
type Scenario []Step

// String returns the scenario as Parse reads it, steps separated by spaces.
func (sc Scenario) String() string {
	parts := make([]string, len(sc))
	for i, s := range sc {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}

// ErrScenario is the kind of every error Parse returns.
var ErrScenario = errors.New("calltest: bad scenario")

// Parse reads a scenario: steps separated by spaces or commas, each one of
//
//	TRIGGER              an input, e.g. ring, accept, start, end, cancel
//	TRIGGER:PARTICIPANT  an input with a participant: network_failure:user, network_failure:agent
//	wait:DURATION        advance the clock, e.g. wait:31s, wait:1m30s (time.ParseDuration)
//
// "timeout" is not a step: the engine fires it when a wait passes a
// state's deadline. Whether a trigger belongs to the lifecycle is decided
// when the scenario runs. Errors wrap ErrScenario and name the step.
func Parse(s string) (Scenario, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	sc := make(Scenario, 0, len(fields))
	for i, f := range fields {
		st, err := parseStep(f)
		if err != nil {
			return nil, fmt.Errorf("%w: step %d %q: %s", ErrScenario, i+1, f, err)
		}
		sc = append(sc, st)
	}
	return sc, nil
}

func parseStep(f string) (Step, error) {
	name, arg, hasArg := strings.Cut(f, ":")
	switch {
	case name == "wait":
		if !hasArg {
			return Step{}, errors.New("want wait:DURATION, e.g. wait:31s")
		}
		d, err := time.ParseDuration(arg)
		if err != nil {
			return Step{}, fmt.Errorf("bad duration: %v", err)
		}
		if d < 0 {
			return Step{}, errors.New("negative wait")
		}
		return Step{Wait: d}, nil
	case name == "":
		return Step{}, errors.New("no trigger")
	case fsm.Trigger(name) == fsm.Timeout:
		return Step{}, errors.New("timeouts are fired by the clock: wait past the deadline instead (wait:31s)")
	case strings.ContainsAny(name, "\"\\"):
		return Step{}, errors.New("a trigger is a name, e.g. ring")
	case !hasArg:
		return Step{Trigger: fsm.Trigger(name)}, nil
	}
	p := event.Participant(arg)
	if !p.Valid() {
		return Step{}, fmt.Errorf("participant %q: want %q or %q", arg, event.User, event.Agent)
	}
	return Step{Trigger: fsm.Trigger(name), Participant: p}, nil
}

// Trace is what a scenario did to its call.
type Trace struct {
	// Call is the call the scenario ran on.
	Call *call.Call
	// Events are the call's events, in order.
	Events []event.Event

	spec *fsm.Spec
}

// States returns the states the call entered, in order.
func (tr *Trace) States() []fsm.State { return statesOf(tr.spec, tr.Events) }

// String returns the states the call entered: "initiated→ringing→missed".
func (tr *Trace) String() string { return Sequence(tr.States()) }

// Expect checks that the call entered exactly the states want, in order; if
// not, it marks the test failed with a message such as
// "call 1: want initiated→ringing→missed, got initiated→ringing→accepted"
// and returns false.
func (tr *Trace) Expect(t T, want ...fsm.State) bool {
	t.Helper()
	return expect(t, fmt.Sprintf("call %d: ", tr.Call.ID()), tr.States(), want)
}

// StepError is a scenario step the engine refused. Err is the engine's
// error, so errors.Is(err, call.ErrIllegalTransition) and errors.As with
// *call.TransitionError see through it.
type StepError struct {
	Index int  // from 0
	Step  Step // the step
	Err   error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("calltest: step %d %q: %v", e.Index+1, e.Step.String(), e.Err)
}

// Unwrap returns the engine's error.
func (e *StepError) Unwrap() error { return e.Err }

// Run parses a scenario and plays it on a new call; see Play.
func (e *Engine) Run(scenario string) (*Trace, error) {
	sc, err := Parse(scenario)
	if err != nil {
		return nil, err
	}
	return e.Play(sc)
}

// Play creates a call (NewCall) and plays the scenario on it: each input is
// applied at the clock's current time, each wait advances the clock, firing
// the timers that fall due. It stops at the first step the engine refuses,
// with a *StepError, and returns the trace so far in any case (nil only if
// the call could not be created).
func (e *Engine) Play(sc Scenario) (*Trace, error) {
	c, err := e.NewCall()
	if err != nil {
		return nil, fmt.Errorf("calltest: create: %w", err)
	}
	tr := &Trace{Call: c, spec: e.Spec()}
	ctx := context.Background()
	for i, s := range sc {
		if s.Trigger == "" {
			e.Advance(s.Wait)
			continue
		}
		if _, err := c.Apply(ctx, call.Input{Trigger: s.Trigger, Participant: s.Participant}); err != nil {
			tr.Events = e.Events(c.ID())
			return tr, &StepError{Index: i, Step: s, Err: err}
		}
	}
	tr.Events = e.Events(c.ID())
	return tr, nil
}
