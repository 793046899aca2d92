package emitter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

func ExampleJSONLines() {
	// os.Stdout is an io.Closer: Flush rather than Close, to keep it open.
	w := emitter.NewJSONLines(os.Stdout)
	ctx := context.Background()
	for i, name := range []string{"popin_outgoing_call_initiated", "popin_outgoing_call_network_failure"} {
		ev := event.Event{Event: name, SessionID: "s-1", UserID: 58559, CallID: 28844, Timestamp: 1771832273 + int64(i)}
		if name == "popin_outgoing_call_network_failure" {
			ev.Participant = event.Agent
		}
		if err := w.Emit(ctx, ev); err != nil {
			fmt.Println("emit:", err)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Println("flush:", err)
	}
	// Output:
	// {"event":"popin_outgoing_call_initiated","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":""},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273}
	// {"event":"popin_outgoing_call_network_failure","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":""},"meta":{"product":{"name":"","id":"","url":""}},"participant":"agent","timestamp":1771832274}
}

func ExampleFanOut() {
	var audit emitter.Recorder
	console := emitter.Func(func(_ context.Context, ev event.Event) error {
		fmt.Println("call", ev.CallID, ev.Event)
		return nil
	})
	broken := emitter.Func(func(context.Context, event.Event) error {
		return errors.New("webhook unreachable")
	})
	sink := emitter.FanOut(console, broken, &audit)

	err := sink.Emit(context.Background(), event.Event{Event: "popin_outgoing_call_initiated", CallID: 28844})
	fmt.Println("error:", err)
	fmt.Println("recorded:", len(audit.Events()))
	if c, ok := sink.(io.Closer); ok {
		fmt.Println("close:", c.Close())
	}
	// Output:
	// call 28844 popin_outgoing_call_initiated
	// error: emitter: fan-out sink 1: webhook unreachable
	// recorded: 1
	// close: <nil>
}

func ExampleNewAsync() {
	slow := emitter.Func(func(_ context.Context, ev event.Event) error {
		fmt.Println("delivered call", ev.CallID)
		return nil
	})
	a, err := emitter.NewAsync(slow, emitter.AsyncConfig{
		QueueSize: 16,
		Policy:    emitter.Fail, // never make the engine wait; report a full queue
		OnError: func(ev event.Event, err error) {
			fmt.Println("call", ev.CallID, "failed:", err)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for id := int64(1); id <= 3; id++ {
		if err := a.Emit(context.Background(), event.Event{CallID: id}); errors.Is(err, emitter.ErrQueueFull) {
			fmt.Println("queue full: call", id, "not accepted")
		}
	}
	// Close delivers what is queued and stops the worker.
	if err := a.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// delivered call 1
	// delivered call 2
	// delivered call 3
}
