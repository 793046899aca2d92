package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/timeout"
)

// The API over an engine whose events go to an event log (here in memory;
// serve uses eventlog's file): create a call, ring it, read its history.
func Example() {
	log := newMemLog()
	clock := timeout.NewVirtual(time.Unix(1771832273, 0))
	eng, _ := call.New(call.Config{
		Clock:        clock,
		NewSessionID: func() string { return "s-1" },
		Emitter: emitter.Func(func(ctx context.Context, ev event.Event) error {
			_, err := log.Append(ctx, ev) // every event goes to the log first
			return err
		}),
	})
	defer eng.Close()
	api, _ := httpapi.New(httpapi.Config{Engine: eng, Log: log, Now: clock.Now})
	go api.Run(context.Background()) // the history tails the log
	defer api.Close()
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	post := func(path, body string) {
		resp, _ := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(resp.StatusCode, " ", string(b))
	}
	post("/v1/calls", `{"call_id":28844,"user_id":58559,"user":{"country_code":"+91"}}`)
	post("/v1/calls/28844/ring", "")
	post("/v1/calls/28844/end", "")

	resp, _ := http.Get(srv.URL + "/v1/calls/28844")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(b))
	// Output:
	// 201 {"call_id":28844,"session_id":"s-1","state":"initiated"}
	// 200 {"call_id":28844,"state":"ringing"}
	// 409 {"type":"https://github.com/callfsm/callfsm/blob/main/docs/serve.md#illegal-transition","title":"Illegal transition","status":409,"detail":"call 28844 is ringing: end is not allowed; allowed: accept, cancel, decline, start","instance":"/v1/calls/28844/end","call_id":28844,"state":"ringing","trigger":"end","allowed":["accept","cancel","decline","start"]}
	// 200 {"call_id":28844,"session_id":"s-1","state":"ringing","live":true,"events":[{"event":"popin_outgoing_call_initiated","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273},{"event":"popin_outgoing_call_ringing","session_id":"s-1","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273}]}
}
