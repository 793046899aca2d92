package call

import (
	"context"
	"errors"
	"fmt"
	"time"

	lfsm "github.com/looplab/fsm"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Step is the rule of one transition: a call with details d in state from
// receives input in at time at. It returns the state the call enters and
// the event that transition emits, or the error the Engine would answer:
// *TransitionError (ErrIllegalTransition), *InputError (ErrInvalidInput),
// or the context's error. It changes nothing.
//
// The Engine applies Step under each call's lock and commits its result
// once the event is emitted; an engine that keeps calls' states elsewhere
// (call/cluster, over JetStream) applies the same Step and commits with a
// compare-and-set, so both answer every input alike. The transition is made
// by a looplab/fsm machine of spec, set to from.
func Step(ctx context.Context, spec *fsm.Spec, d *Details, from fsm.State, in Input, at time.Time) (fsm.State, event.Event, error) {
	m := spec.AcquireFSM(from)
	defer spec.ReleaseFSM(m)
	if err := m.Event(ctx, string(in.Trigger)); err != nil {
		return from, event.Event{}, translate(spec, d.CallID, from, err, in.Trigger)
	}
	to := fsm.State(m.Current())

	participant := in.Participant
	if spec.NeedsParticipant(to) {
		if tr, _ := spec.Transition(from, in.Trigger); tr.Participant != "" {
			participant = event.Participant(tr.Participant)
		}
		if !participant.Valid() {
			return from, event.Event{}, &InputError{CallID: d.CallID, Field: "participant", Reason: fmt.Sprintf("%s needs participant %q or %q, got %q", to, event.User, event.Agent, participant)}
		}
	} else if participant != "" {
		return from, event.Event{}, &InputError{CallID: d.CallID, Field: "participant", Reason: fmt.Sprintf("only allowed into a participant state, not %s", to)}
	}
	return to, NewEvent(spec, d, to, participant, at.Unix()), nil
}

// translate turns looplab/fsm's errors into the engine's.
func translate(spec *fsm.Spec, id int64, from fsm.State, err error, trigger fsm.Trigger) error {
	var invalid lfsm.InvalidEventError
	var unknown lfsm.UnknownEventError
	switch {
	case errors.As(err, &invalid):
		var allowed []fsm.Trigger
		for _, t := range spec.Allowed(from) {
			if t != fsm.Timeout {
				allowed = append(allowed, t)
			}
		}
		return &TransitionError{CallID: id, State: from, Trigger: trigger, Allowed: allowed}
	case errors.As(err, &unknown):
		return &InputError{CallID: id, Field: "trigger", Reason: fmt.Sprintf("%q is not a trigger of lifecycle %q", trigger, spec.Name())}
	default:
		// Canceled contexts and looplab's internal states: nothing applied.
		return fmt.Errorf("call %d: %s: %w", id, trigger, err)
	}
}

// NewEvent returns the event of a call with details d entering state st:
// the seed's payload, with participant p and timestamp ts (Unix seconds).
func NewEvent(spec *fsm.Spec, d *Details, st fsm.State, p event.Participant, ts int64) event.Event {
	return event.Event{
		Event: spec.EventName(st), SessionID: d.SessionID, UserID: d.UserID, CallID: d.CallID,
		ScheduleID: d.ScheduleID, Agent: d.Agent, User: d.User, Meta: d.Meta,
		Participant: p, Timestamp: ts,
	}
}

// DetailsOf returns the details a call was created with, as its event ev
// (any of its events) carries them.
func DetailsOf(ev *event.Event) Details {
	return Details{
		CallID: ev.CallID, SessionID: ev.SessionID, UserID: ev.UserID,
		ScheduleID: ev.ScheduleID, Agent: ev.Agent, User: ev.User, Meta: ev.Meta,
	}
}

// Validate checks what Create requires of d: a positive call_id and a
// non-negative user_id. It returns an *InputError naming the field.
func (d *Details) Validate() error {
	if d.CallID <= 0 {
		return &InputError{CallID: d.CallID, Field: "call_id", Reason: "must be a positive integer"}
	}
	if d.UserID < 0 {
		return &InputError{CallID: d.CallID, Field: "user_id", Reason: "must not be negative"}
	}
	return nil
}
