// Package calltest provides utilities for testing code built on callfsm's
// call engine, in the spirit of net/http/httptest: a real call.Engine on a
// virtual clock with a recording emitter, scenarios written as data
// ("ring accept start end", "ring wait:31s"), assertions with readable
// failure messages, and the model-based cases (every path of a lifecycle,
// or every transition the shortest way) to run a handler across.
//
// Nothing is faked: a missed event is emitted because the ring timer fired
// when the test advanced the clock past its deadline.
//
//	e := calltest.New(t, calltest.Config{})
//	tr, err := e.Run("ring wait:31s")
//	require.NoError(t, err)
//	tr.Expect(t, fsm.Initiated, fsm.Ringing, fsm.Missed)
package calltest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// StartUnix is when a test engine's clock starts by default: the seed
// payload's timestamp, 2026-02-23 07:37:53 UTC.
const StartUnix = 1771832273

// Config configures a test engine. The zero value is the Popin outgoing
// lifecycle, starting at StartUnix, with Details for every call.
type Config struct {
	// Spec is the lifecycle. Nil means fsm.Outgoing().
	Spec *fsm.Spec
	// Start is the virtual clock's start. Zero means time.Unix(StartUnix, 0).
	Start time.Time
	// Details makes the details of the calls the engine creates itself
	// (NewCall, Run, Play), from their call_id. Nil means Details.
	Details func(callID int64) call.Details
}

// Engine is a call.Engine on a virtual clock whose events are recorded.
// Time moves only when the test advances the clock (Advance, or a wait in
// a scenario), and timers fire in the advancing goroutine, so a test is
// deterministic and never sleeps. Engine's methods are safe for concurrent
// use, like call.Engine's.
type Engine struct {
	*call.Engine
	// Clock is the engine's clock.
	Clock *timeout.Virtual
	// Recorder holds every event the engine emitted, in order.
	Recorder *emitter.Recorder

	details func(int64) call.Details
	lastID  atomic.Int64
}

// NewEngine returns a test engine configured by cfg. Close it when done
// (New does that for a test).
func NewEngine(cfg Config) (*Engine, error) {
	e := &Engine{Recorder: &emitter.Recorder{}, details: cfg.Details}
	if e.details == nil {
		e.details = Details
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Unix(StartUnix, 0)
	}
	e.Clock = timeout.NewVirtual(start)
	eng, err := call.New(call.Config{Spec: cfg.Spec, Clock: e.Clock, Emitter: e.Recorder})
	if err != nil {
		return nil, fmt.Errorf("calltest: %w", err)
	}
	e.Engine = eng
	return e, nil
}

// New returns a test engine configured by cfg, closed when the test and its
// subtests end. It fails the test at once if cfg is invalid.
func New(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// Details returns the seed payload's details for a call: agent Sasha calling
// Demo Vishal (+91) about Wireless Headphones, with a session_id made from
// the call_id so that events are reproducible.
func Details(callID int64) call.Details {
	return call.Details{
		CallID:    callID,
		SessionID: fmt.Sprintf("bf0b3a76-0596-4602-a2c3-%012d", callID%1e12),
		UserID:    58559,
		Agent:     event.AgentInfo{Name: "Sasha", Email: "menonaiswarya0@gmail.com"},
		User:      event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta:      event.Meta{Product: event.Product{Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones"}},
	}
}

// NewCall creates a call with the next unused call_id (1, 2, …) and the
// Config's details, and emits its initial event.
func (e *Engine) NewCall() (*call.Call, error) {
	return e.Create(context.Background(), e.details(e.lastID.Add(1)))
}

// Advance moves the clock forward by d, firing every timer that falls due
// (ring timeouts and the like) in deadline order, and returns how many
// fired.
func (e *Engine) Advance(d time.Duration) int { return e.Clock.Advance(d) }

// Events returns the events emitted so far for one call, in order.
func (e *Engine) Events(callID int64) []event.Event {
	var out []event.Event
	for _, ev := range e.Recorder.Events() {
		if ev.CallID == callID {
			out = append(out, ev)
		}
	}
	return out
}

// States returns the states one call has entered so far, from its events.
func (e *Engine) States(callID int64) []fsm.State { return statesOf(e.Spec(), e.Events(callID)) }

// Expect checks that the call with that id has emitted exactly the events of
// the states want, in order. If not, it marks the test failed with a message
// such as
//
//	call 1: want initiated→ringing→missed, got initiated→ringing→accepted
//
// and returns false; the test goes on.
func (e *Engine) Expect(t T, callID int64, want ...fsm.State) bool {
	t.Helper()
	return expect(t, fmt.Sprintf("call %d: ", callID), e.States(callID), want)
}

// T is the part of testing.TB the assertions use: *testing.T, *testing.B
// and *testing.F have it, and so can a test's own reporter.
type T interface {
	Helper()
	Errorf(format string, args ...any)
}

func expect(t T, prefix string, got, want []fsm.State) bool {
	t.Helper()
	if equalStates(got, want) {
		return true
	}
	t.Errorf("%swant %s, got %s", prefix, Sequence(want), Sequence(got))
	return false
}

func equalStates(a, b []fsm.State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Sequence writes states the way failure messages do:
// "initiated→ringing→missed", or "(no events)".
func Sequence(states []fsm.State) string {
	if len(states) == 0 {
		return "(no events)"
	}
	parts := make([]string, len(states))
	for i, st := range states {
		parts[i] = string(st)
	}
	return strings.Join(parts, "→")
}

// statesOf maps events to the states they enter; an event of another
// lifecycle shows as its name, quoted.
func statesOf(spec *fsm.Spec, evs []event.Event) []fsm.State {
	out := make([]fsm.State, len(evs))
	for i, ev := range evs {
		st, ok := spec.StateOf(ev.Event)
		if !ok {
			st = fsm.State(fmt.Sprintf("%q", ev.Event))
		}
		out[i] = st
	}
	return out
}
