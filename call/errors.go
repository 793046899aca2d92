package call

import (
	"errors"
	"fmt"
	"strings"

	"github.com/callfsm/callfsm/fsm"
)

// Sentinel errors: the kind of every error the engine returns, for
// errors.Is. The …Error structs carry the details, for errors.As.
var (
	// ErrUnknownCall: no live or recently ended call has that call_id.
	ErrUnknownCall = errors.New("unknown call")
	// ErrCallExists: a live call already has that call_id.
	ErrCallExists = errors.New("call_id already live")
	// ErrIllegalTransition: the trigger is not legal in the call's state.
	ErrIllegalTransition = errors.New("illegal transition")
	// ErrCallEnded: the call has reached a terminal state.
	ErrCallEnded = errors.New("call already ended")
	// ErrInvalidInput: a field of the input is missing or wrong.
	ErrInvalidInput = errors.New("invalid input")
	// ErrEmit: the transition's event could not be emitted, so the
	// transition was not applied.
	ErrEmit = errors.New("event not emitted")
	// ErrClosed: the engine is closed.
	ErrClosed = errors.New("engine closed")
)

// CallError says which call an ErrUnknownCall or ErrCallExists is about.
type CallError struct {
	CallID int64
	Err    error // ErrUnknownCall or ErrCallExists
}

func (e *CallError) Error() string { return fmt.Sprintf("call %d: %v", e.CallID, e.Err) }

// Unwrap returns the kind of error.
func (e *CallError) Unwrap() error { return e.Err }

// TransitionError is an illegal trigger for a call's state. Allowed lists the
// triggers a caller may fire in that state (the engine's own timeout
// trigger is left out), sorted.
type TransitionError struct {
	CallID  int64
	State   fsm.State
	Trigger fsm.Trigger
	Allowed []fsm.Trigger
}

func (e *TransitionError) Error() string {
	allowed := make([]string, len(e.Allowed))
	for i, t := range e.Allowed {
		allowed[i] = string(t)
	}
	return fmt.Sprintf("call %d: illegal transition: cannot %q in state %q (allowed: %s)",
		e.CallID, e.Trigger, e.State, strings.Join(allowed, ", "))
}

// Unwrap returns ErrIllegalTransition.
func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// EndedError is an input for a call that has ended; State says how.
type EndedError struct {
	CallID int64
	State  fsm.State
}

func (e *EndedError) Error() string {
	return fmt.Sprintf("call %d: call already ended: %s", e.CallID, e.State)
}

// Unwrap returns ErrCallEnded.
func (e *EndedError) Unwrap() error { return ErrCallEnded }

// InputError names the field of an input that is missing or wrong.
type InputError struct {
	CallID int64
	Field  string // e.g. "call_id", "participant", "trigger"
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("call %d: invalid input: %s: %s", e.CallID, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidInput.
func (e *InputError) Unwrap() error { return ErrInvalidInput }

// EmitError is a transition whose event the emitter refused. The call
// stayed in State (empty when the refused event was a new call's first: the
// call was not created); Event names the event that was not emitted. Err is the
// emitter's error, and errors.Is also matches ErrEmit.
type EmitError struct {
	CallID int64
	State  fsm.State
	Event  string
	Err    error
}

func (e *EmitError) Error() string {
	if e.Event == "" { // the call could not be read (its store unreachable)
		return fmt.Sprintf("call %d: not applied: %v", e.CallID, e.Err)
	}
	if e.State == "" {
		return fmt.Sprintf("call %d: %s not emitted, call not created: %v", e.CallID, e.Event, e.Err)
	}
	return fmt.Sprintf("call %d: %s not emitted, call stays %s: %v", e.CallID, e.Event, e.State, e.Err)
}

// Unwrap returns ErrEmit and the emitter's error.
func (e *EmitError) Unwrap() []error { return []error{ErrEmit, e.Err} }
