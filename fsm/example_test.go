package fsm_test

import (
	"fmt"
	"time"

	"github.com/callfsm/callfsm/fsm"
)

func ExampleOutgoing() {
	spec := fsm.Outgoing()
	fmt.Println(spec.Allowed(fsm.Ringing))
	next, _ := spec.Next(fsm.Ringing, fsm.Start)
	fmt.Println(next, spec.EventName(next))
	d, to, _ := spec.Timeout(fsm.Ringing)
	fmt.Println(d, to)
	// Output:
	// [accept cancel decline start timeout]
	// started popin_outgoing_call_started
	// 30s missed
}

// A lifecycle of one's own: incoming calls, with another event prefix.
func ExampleNewSpec() {
	spec, err := fsm.NewSpec(fsm.Config{
		Name:        "incoming",
		EventPrefix: "popin_incoming_call_",
		Initial:     "offered",
		States:      []fsm.State{"offered", "answered", "completed", "rejected"},
		Terminal:    []fsm.State{"completed", "rejected"},
		Transitions: []fsm.Transition{
			{From: "offered", Trigger: "answer", To: "answered"},
			{From: "offered", Trigger: fsm.Timeout, To: "rejected"},
			{From: "answered", Trigger: "hangup", To: "completed"},
		},
		Timeouts: map[fsm.State]time.Duration{"offered": 20 * time.Second},
	})
	fmt.Println(err)
	fmt.Println(spec.EventName("answered"))

	_, err = fsm.NewSpec(fsm.Config{
		Name: "broken", EventPrefix: "x_", Initial: "a",
		States: []fsm.State{"a", "b", "done"}, Terminal: []fsm.State{"done"},
		Transitions: []fsm.Transition{{From: "a", Trigger: "go", To: "b"}, {From: "done", Trigger: "again", To: "a"}},
	})
	fmt.Println(err)
	// Output:
	// <nil>
	// popin_incoming_call_answered
	// invalid lifecycle spec "broken": terminal state "done" has an exit (again -> a)
}
