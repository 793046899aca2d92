package check_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/callfsm/callfsm/call/check"
)

// A log of two calls: the first skips ringing, the second never ends.
func Example() {
	log := `{"event":"popin_outgoing_call_initiated","session_id":"s-1","user_id":58559,"call_id":1,"timestamp":1771832273}
{"event":"popin_outgoing_call_accepted","session_id":"s-1","user_id":58559,"call_id":1,"timestamp":1771832280}
{"event":"popin_outgoing_call_initiated","session_id":"s-2","user_id":58559,"call_id":2,"timestamp":1771832281}
{"event":"popin_outgoing_call_started","session_id":"s-1","user_id":58559,"call_id":1,"timestamp":1771832290}
{"event":"popin_outgoing_call_successful","session_id":"s-1","user_id":58559,"call_id":1,"timestamp":1771832350}
`
	c, err := check.New(check.Config{})
	if err != nil {
		panic(err)
	}
	rep, err := c.Check(context.Background(), check.Input{Name: "calls.log", R: strings.NewReader(log)})
	if err != nil {
		panic(err)
	}
	for _, f := range rep.Findings {
		fmt.Println(f)
	}
	fmt.Printf("%d events, %d calls, %d successful, %d errors, %d warnings\n",
		rep.Events, rep.Calls, rep.Outcomes["successful"], rep.Errors, rep.Warnings)
	// Output:
	// calls.log:2: call 1: illegal-transition: popin_outgoing_call_accepted cannot follow initiated; expected popin_outgoing_call_ringing, popin_outgoing_call_abandoned, popin_outgoing_call_busy or popin_outgoing_call_customer_unavailable
	// calls.log:3: call 2: overdue: still in initiated at the end of input, which goes on to 1771832350: its 30s timeout was due at 1771832311 (entered at 1771832281) and should have ended it as popin_outgoing_call_customer_unavailable
	// 5 events, 2 calls, 1 successful, 2 errors, 0 warnings
}

// Findings can be streamed as they are found, and the listing capped while
// counting goes on.
func ExampleConfig_onFinding() {
	log := "not json\n{\"event\":\"popin_outgoing_call_ringing\"}\n[]\n"
	c, _ := check.New(check.Config{
		MaxFindings: 2,
		OnFinding:   func(f check.Finding) { fmt.Println(f.Line, f.Rule, f.Severity) },
	})
	rep, _ := c.Check(context.Background(), check.Input{Name: "-", R: strings.NewReader(log)})
	fmt.Println(rep.Errors, "errors,", rep.Unlisted, "unlisted")
	// Output:
	// 1 malformed error
	// 2 missing-field error
	// 3 errors, 1 unlisted
}
