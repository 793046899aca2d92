// Package event defines the payload of a call-lifecycle event: the Popin
// Seller App's outgoing-call event, field for field and in the seed's order.
//
// An Event encodes to exactly the JSON of the seed document
// (../shared/seed/outgoing-call-events.txt): event, session_id, user_id,
// call_id, schedule_id, agent{name,email},
// user{name,email,phone_number,country_code}, meta{product{name,id,url}},
// participant (network_failure only) and timestamp in Unix seconds.
//
// The package knows nothing of the lifecycle's rules; fsm/ and call/ do.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Participant says on which side a network failure happened.
type Participant string

// The participants of a network failure (seed, event 7).
const (
	// NoParticipant is the zero value: the event is not a network failure.
	NoParticipant Participant = ""
	// User is the customer's side.
	User Participant = "user"
	// Agent is the seller agent's side.
	Agent Participant = "agent"
)

// Valid reports whether p is User or Agent.
func (p Participant) Valid() bool { return p == User || p == Agent }

// AgentInfo is the seller agent placing the call.
type AgentInfo struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// UserInfo is the customer being called. PhoneNumber is nullable.
type UserInfo struct {
	Name        string  `json:"name"`
	Email       string  `json:"email"`
	PhoneNumber *string `json:"phone_number"`
	CountryCode string  `json:"country_code"`
}

// Product is the product the call is about.
type Product struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	URL  string `json:"url"`
}

// Meta holds the call's context.
type Meta struct {
	Product Product `json:"product"`
}

// Event is one call-lifecycle event, as emitted on every transition.
//
// The zero value of ScheduleID and User.PhoneNumber encodes as null.
// Participant is encoded only when set (on network_failure events).
type Event struct {
	Event       string      `json:"event"`
	SessionID   string      `json:"session_id"`
	UserID      int64       `json:"user_id"`
	CallID      int64       `json:"call_id"`
	ScheduleID  *int64      `json:"schedule_id"`
	Agent       AgentInfo   `json:"agent"`
	User        UserInfo    `json:"user"`
	Meta        Meta        `json:"meta"`
	Participant Participant `json:"participant,omitempty"`
	Timestamp   int64       `json:"timestamp"`
}

// MarshalJSON encodes e in the seed's field order. It gives the same bytes
// as encoding/json would for the struct, without reflection.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 384)), nil
}

// plain has Event's fields without its methods, so that encoding/json can
// decode into it without recursing into UnmarshalJSON.
type plain Event

// ErrInvalid is the kind of every error Decode returns for a payload that is
// JSON but not a valid event.
var ErrInvalid = errors.New("invalid event")

// FieldError names the field of a payload that is missing or ill-typed.
type FieldError struct {
	Field  string // the JSON name, e.g. "call_id" or "agent.email"
	Reason string // "missing", or what was wrong with the value
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid event: field %q: %s", e.Field, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// UnmarshalJSON decodes a payload. Unknown fields are ignored; a field of the
// wrong type is an error naming the field.
func (e *Event) UnmarshalJSON(data []byte) error {
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &FieldError{Field: te.Field, Reason: "want " + te.Type.String() + ", got JSON " + te.Value}
		}
		return err
	}
	*e = Event(p)
	return nil
}

// Decode parses one JSON payload and checks that the fields every event
// needs are present: event, session_id, user_id, call_id and timestamp.
// Errors name the field (*FieldError, errors.Is ErrInvalid) or are JSON
// syntax errors.
func Decode(data []byte) (Event, error) {
	// One pass of encoding/json: the five fields every event needs are
	// pointers, so that missing and null tell apart from zero.
	var w struct {
		Event       *string     `json:"event"`
		SessionID   *string     `json:"session_id"`
		UserID      *int64      `json:"user_id"`
		CallID      *int64      `json:"call_id"`
		ScheduleID  *int64      `json:"schedule_id"`
		Agent       AgentInfo   `json:"agent"`
		User        UserInfo    `json:"user"`
		Meta        Meta        `json:"meta"`
		Participant Participant `json:"participant"`
		Timestamp   *int64      `json:"timestamp"`
	}
	err := json.Unmarshal(data, &w)
	var te *json.UnmarshalTypeError
	if err != nil && (!errors.As(err, &te) || te.Field == "") {
		return Event{}, err // not JSON, or not an object
	}
	// A missing field is named before a field of the wrong type (whose
	// pointer is nil too, but which is not missing).
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"event", w.Event == nil},
		{"session_id", w.SessionID == nil},
		{"user_id", w.UserID == nil},
		{"call_id", w.CallID == nil},
		{"timestamp", w.Timestamp == nil},
	} {
		if f.missing && (te == nil || te.Field != f.name) {
			return Event{}, &FieldError{Field: f.name, Reason: "missing"}
		}
	}
	if te != nil {
		return Event{}, &FieldError{Field: te.Field, Reason: "want " + te.Type.String() + ", got JSON " + te.Value}
	}
	return Event{
		Event: *w.Event, SessionID: *w.SessionID, UserID: *w.UserID, CallID: *w.CallID,
		ScheduleID: w.ScheduleID, Agent: w.Agent, User: w.User, Meta: w.Meta,
		Participant: w.Participant, Timestamp: *w.Timestamp,
	}, nil
}
