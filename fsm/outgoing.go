package fsm

import "time"

// DefaultTimeout is the default time a call may stay in initiated, ringing or
// accepted: the seed's ringing timeout, and the reach and connect timeouts
// that keep a call from hanging forever.
const DefaultTimeout = 30 * time.Second

// OutgoingConfig returns the definition of the Popin Seller App's
// outgoing-call lifecycle (../shared/seed/outgoing-call-events.txt):
//
//	initiated: ring → ringing, cancel → abandoned, busy → busy,
//	           unavailable → customer_unavailable, timeout (30 s) → customer_unavailable
//	ringing:   accept → accepted, start → started (auto-answer), decline → declined,
//	           timeout (30 s) → missed, cancel → abandoned
//	accepted:  start → started, cancel → abandoned, network_failure → network_failure,
//	           timeout (30 s) → network_failure (participant user)
//	started:   end → successful, network_failure → network_failure
//
// Each call returns a fresh value the caller may change before NewSpec.
func OutgoingConfig() Config {
	return Config{
		Name:        "popin-outgoing-call",
		EventPrefix: "popin_outgoing_call_",
		Initial:     Initiated,
		States: []State{
			Initiated, Ringing, Accepted, Started,
			Successful, Missed, Abandoned, NetworkFailure, Declined, Busy, CustomerUnavailable,
		},
		Terminal:          []State{Successful, Missed, Abandoned, NetworkFailure, Declined, Busy, CustomerUnavailable},
		ParticipantStates: []State{NetworkFailure},
		Transitions: []Transition{
			{From: Initiated, Trigger: Ring, To: Ringing},
			{From: Initiated, Trigger: Cancel, To: Abandoned},
			{From: Initiated, Trigger: BusySignal, To: Busy},
			{From: Initiated, Trigger: Unavailable, To: CustomerUnavailable},
			{From: Initiated, Trigger: Timeout, To: CustomerUnavailable},
			{From: Ringing, Trigger: Accept, To: Accepted},
			{From: Ringing, Trigger: Start, To: Started},
			{From: Ringing, Trigger: Decline, To: Declined},
			{From: Ringing, Trigger: Timeout, To: Missed},
			{From: Ringing, Trigger: Cancel, To: Abandoned},
			{From: Accepted, Trigger: Start, To: Started},
			{From: Accepted, Trigger: Cancel, To: Abandoned},
			{From: Accepted, Trigger: NetFailure, To: NetworkFailure},
			{From: Accepted, Trigger: Timeout, To: NetworkFailure, Participant: "user"},
			{From: Started, Trigger: End, To: Successful},
			{From: Started, Trigger: NetFailure, To: NetworkFailure},
		},
		Timeouts: map[State]time.Duration{
			Initiated: DefaultTimeout,
			Ringing:   DefaultTimeout,
			Accepted:  DefaultTimeout,
		},
	}
}

// Outgoing returns the Popin outgoing-call lifecycle with its default
// timeouts. Each call builds a new Spec.
func Outgoing() *Spec {
	s, err := NewSpec(OutgoingConfig())
	if err != nil {
		// OutgoingConfig is a constant of this package; TestOutgoingIsValid
		// proves it builds.
		panic(err)
	}
	return s
}
