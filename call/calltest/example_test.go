package calltest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/calltest"
	"github.com/callfsm/callfsm/fsm"
)

// A scenario is a line of data; the engine is real and the clock virtual.
// In a test, calltest.New(t, calltest.Config{}) also closes the engine.
func Example() {
	e, err := calltest.NewEngine(calltest.Config{})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	tr, _ := e.Run("ring accept start wait:2m end")
	fmt.Println(tr)
	for _, ev := range tr.Events {
		fmt.Println(ev.Timestamp, ev.Event)
	}
	// Output:
	// initiated→ringing→accepted→started→successful
	// 1771832273 popin_outgoing_call_initiated
	// 1771832273 popin_outgoing_call_ringing
	// 1771832273 popin_outgoing_call_accepted
	// 1771832273 popin_outgoing_call_started
	// 1771832393 popin_outgoing_call_successful
}

// Waiting past the ringing timeout ends the call as missed: the engine's
// timer fired when the wait moved the clock past the deadline.
func ExampleEngine_Run_timeout() {
	e, _ := calltest.NewEngine(calltest.Config{})
	defer e.Close()

	tr, _ := e.Run("ring wait:31s")
	fmt.Println(tr)
	fmt.Println(tr.Events[2].Timestamp - tr.Events[1].Timestamp)

	// An input the lifecycle does not allow stops the scenario.
	tr, err := e.Run("ring end")
	fmt.Println(tr, errors.Is(err, call.ErrIllegalTransition))
	fmt.Println(err)
	// Output:
	// initiated→ringing→missed
	// 30
	// initiated→ringing true
	// calltest: step 2 "end": call 2: illegal transition: cannot "end" in state "ringing" (allowed: accept, cancel, decline, start)
}

// printT reports failures by printing them, to show the message a test gets.
type printT struct{}

func (printT) Helper()                           {}
func (printT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// Expect's failure message says what was wanted and what came.
func ExampleTrace_Expect() {
	e, _ := calltest.NewEngine(calltest.Config{})
	defer e.Close()

	tr, _ := e.Run("ring accept")
	ok := tr.Expect(printT{}, fsm.Initiated, fsm.Ringing, fsm.Missed) // in a test: tr.Expect(t, ...)
	fmt.Println(ok)
	// Output:
	// call 1: want initiated→ringing→missed, got initiated→ringing→accepted
	// false
}

// Driving a call by hand: create it, fire triggers, advance the clock.
func ExampleEngine_Advance() {
	e, _ := calltest.NewEngine(calltest.Config{})
	defer e.Close()

	c, _ := e.NewCall()
	_, _ = c.Fire(context.Background(), fsm.Ring)
	fmt.Println(e.Advance(29*time.Second), c.State())
	fmt.Println(e.Advance(time.Second), c.State())
	fmt.Println(calltest.Sequence(e.States(c.ID())))
	// Output:
	// 0 ringing
	// 1 missed
	// initiated→ringing→missed
}

// Model-based testing: every path of the lifecycle as a scenario, with the
// states it must enter. Run each through the code under test.
func ExamplePaths() {
	spec := fsm.Outgoing()
	for _, c := range calltest.Paths(spec) {
		if c.Path.End() == fsm.NetworkFailure {
			fmt.Printf("%-40s %s\n", c.Name, calltest.Sequence(c.Want))
		}
	}
	fmt.Println(len(calltest.Paths(spec)), "cases;", len(calltest.CoveringPaths(spec)), "take every transition")
	// Output:
	// ring accept network_failure:user         initiated→ringing→accepted→network_failure
	// ring accept network_failure:agent        initiated→ringing→accepted→network_failure
	// ring accept start network_failure:user   initiated→ringing→accepted→started→network_failure
	// ring accept start network_failure:agent  initiated→ringing→accepted→started→network_failure
	// ring accept wait:30s                     initiated→ringing→accepted→network_failure
	// ring start network_failure:user          initiated→ringing→started→network_failure
	// ring start network_failure:agent         initiated→ringing→started→network_failure
	// 17 cases; 13 take every transition
}

func ExampleParse() {
	sc, err := calltest.Parse("ring, wait:1m30s, network_failure:agent")
	fmt.Println(len(sc), sc, err)
	_, err = calltest.Parse("ring timeout")
	fmt.Println(err)
	// Output:
	// 3 ring wait:1m30s network_failure:agent <nil>
	// calltest: bad scenario: step 2 "timeout": timeouts are fired by the clock: wait past the deadline instead (wait:31s)
}
