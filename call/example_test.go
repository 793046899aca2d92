package call_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// A whole call, its events written as JSON Lines.
func Example() {
	clock := timeout.NewVirtual(time.Unix(1771832273, 0))
	out := emitter.NewJSONLines(os.Stdout) // Flush, not Close: Close would close os.Stdout
	eng, err := call.New(call.Config{Clock: clock, Emitter: out, NewSessionID: func() string { return "s-1" }})
	if err != nil {
		panic(err)
	}
	defer eng.Close()

	ctx := context.Background()
	c, _ := eng.Create(ctx, call.Details{CallID: 28844, UserID: 58559, User: event.UserInfo{CountryCode: "+91"}})
	_, _ = c.Fire(ctx, fsm.Ring)
	clock.Advance(5 * time.Second)
	_, _ = c.Fire(ctx, fsm.Start) // auto-answer
	clock.Advance(time.Minute)
	_, _ = c.Fire(ctx, fsm.End)
	_ = out.Flush()
	fmt.Println(c.Err())
	// Output:
	// {"event":"popin_outgoing_call_initiated","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273}
	// {"event":"popin_outgoing_call_ringing","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273}
	// {"event":"popin_outgoing_call_started","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832278}
	// {"event":"popin_outgoing_call_successful","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832338}
	// call 28844: call already ended: successful
}

// The ringing timeout ends an unanswered call as missed, on the clock.
func ExampleEngine_timeout() {
	clock := timeout.NewVirtual(time.Unix(1771832273, 0))
	eng, _ := call.New(call.Config{Clock: clock, Emitter: emitter.Func(func(_ context.Context, ev event.Event) error {
		fmt.Println(ev.Timestamp, ev.Event)
		return nil
	})})
	defer eng.Close()
	ctx := context.Background()
	c, _ := eng.Create(ctx, call.Details{CallID: 1})
	_, _ = c.Fire(ctx, fsm.Ring)
	deadline, _ := c.Deadline()
	fmt.Println("ring deadline", deadline.Unix())
	clock.Advance(30 * time.Second)
	fmt.Println(c.State())
	// Output:
	// 1771832273 popin_outgoing_call_initiated
	// 1771832273 popin_outgoing_call_ringing
	// ring deadline 1771832303
	// 1771832303 popin_outgoing_call_missed
	// missed
}

// Errors say what was wrong, for people and for errors.Is / errors.As.
func ExampleTransitionError() {
	eng, _ := call.New(call.Config{Clock: timeout.NewVirtual(time.Unix(0, 0))})
	defer eng.Close()
	ctx := context.Background()
	_, _ = eng.Create(ctx, call.Details{CallID: 7})
	_, err := eng.Fire(ctx, 7, fsm.End)
	fmt.Println(err)
	var te *call.TransitionError
	if errors.As(err, &te) {
		fmt.Println(te.State, te.Allowed)
	}
	fmt.Println(errors.Is(err, call.ErrIllegalTransition))
	_, err = eng.Fire(ctx, 8, fsm.Ring)
	fmt.Println(err, errors.Is(err, call.ErrUnknownCall))
	// Output:
	// call 7: illegal transition: cannot "end" in state "initiated" (allowed: busy, cancel, ring, unavailable)
	// initiated [busy cancel ring unavailable]
	// true
	// call 8: unknown call true
}
