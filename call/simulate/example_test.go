package simulate_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/simulate"
	"github.com/callfsm/callfsm/fsm"
)

// Three calls through the real engine on a virtual clock: the missed call
// ends 30 s after it rang because the ring timer fired.
func Example() {
	sim, err := simulate.New(simulate.Config{Calls: 3, Seed: 1})
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	sum, err := sim.Run(context.Background(), &out, nil)
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		ev, _ := event.Decode([]byte(line))
		fmt.Println(ev.Timestamp, ev.CallID, strings.TrimPrefix(ev.Event, "popin_outgoing_call_"))
	}
	fmt.Println(sum)
	// Output:
	// 1771832273 28844 initiated
	// 1771832273 28845 initiated
	// 1771832273 28846 initiated
	// 1771832273 28846 ringing
	// 1771832274 28845 ringing
	// 1771832275 28844 ringing
	// 1771832280 28844 declined
	// 1771832297 28845 accepted
	// 1771832301 28845 abandoned
	// 1771832303 28846 missed
	// 3 calls, 10 events, 10 lines, abandoned 1, declined 1, missed 1
}

// Faults come with the findings the replay checker must report for them.
func ExampleReadTruth() {
	sim, _ := simulate.New(simulate.Config{
		Calls: 200, Seed: 3,
		Mix:    simulate.Mix{fsm.Successful: 1},
		Faults: simulate.Faults{Drop: 0.01},
	})
	var out, truth bytes.Buffer
	sum, _ := sim.Run(context.Background(), &out, &truth)
	recs, _ := simulate.ReadTruth(&truth)
	fmt.Println(sum.Faults[simulate.FaultDrop], "drops;", len(recs), "findings, the first:")
	fmt.Printf("%+v\n", recs[0])
	// Output:
	// 6 drops; 6 findings, the first:
	// {Line:376 CallID:28969 Rule:no-initiated Fault:drop Event:popin_outgoing_call_ringing}
}
