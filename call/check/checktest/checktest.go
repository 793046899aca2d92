// Package checktest makes event logs for tests and benchmarks of the replay
// checker: legal logs written by the real engine (call.Engine on a virtual
// clock, emitting JSON Lines), which tests then corrupt line by line to
// trigger each rule.
package checktest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// Start is the instant generated logs begin at by default: the seed's
// first timestamp.
var Start = time.Unix(1771832273, 0)

// Config shapes a generated log. The zero value is one call.
type Config struct {
	// Spec is the lifecycle; nil means fsm.Outgoing().
	Spec *fsm.Spec
	// Calls is how many calls to make (at least 1).
	Calls int
	// Concurrent is how many calls are live at once, at most (default 100).
	Concurrent int
	// Seed makes the log: the same Config writes the same bytes.
	Seed uint64
	// Start is the clock's start; zero means Start.
	Start time.Time
	// FirstID is the first call_id (default 1); calls are numbered up.
	FirstID int64
	// StopEarly stops the log as soon as the last call is created: the
	// calls live then are left unfinished (Stats.Live).
	StopEarly bool
}

// Stats describes a generated log.
type Stats struct {
	Events   int
	Calls    int
	Live     int               // calls left unfinished (StopEarly)
	Outcomes map[fsm.State]int // calls per terminal state
}

// Write writes a legal log to w: calls created, driven by random inputs,
// timing out on the engine's clock, and ending, interleaved as live
// traffic is. Most calls act every few seconds; one in eight is slow (about
// forty seconds a step), and in one state in sixteen a call waits for the
// state's timeout.
func Write(w io.Writer, cfg Config) (Stats, error) {
	spec := cfg.Spec
	if spec == nil {
		spec = fsm.Outgoing()
	}
	if cfg.Calls < 1 {
		cfg.Calls = 1
	}
	if cfg.Concurrent < 1 {
		cfg.Concurrent = 100
	}
	if cfg.Start.IsZero() {
		cfg.Start = Start
	}
	if cfg.FirstID == 0 {
		cfg.FirstID = 1
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	bw := bufio.NewWriterSize(w, 1<<16)
	stats := Stats{Outcomes: make(map[fsm.State]int)}
	out := emitter.NewJSONLines(bw)
	counted := emitter.Func(func(ctx context.Context, ev event.Event) error {
		stats.Events++
		return out.Emit(ctx, ev)
	})
	clock := timeout.NewVirtual(cfg.Start)
	eng, err := call.New(call.Config{
		Spec: spec, Clock: clock, Emitter: counted,
		NewSessionID: func() string { return uuid(rng) },
		OnError:      func(int64, error) {},
	})
	if err != nil {
		return stats, err
	}
	defer eng.Close()

	index := make(map[fsm.State]uint, len(spec.States()))
	for i, st := range spec.States() {
		index[st] = uint(i)
	}
	ctx := context.Background()
	type live struct {
		c    *call.Call
		pace int // acts once in pace seconds, on average
		// sleepy says, four bits a state, in which states the call never
		// acts, so that the state's timeout ends it.
		sleepy uint64
	}
	var calls []live
	next := cfg.FirstID
	for created := 0; created < cfg.Calls || len(calls) > 0; {
		// New calls, up to the concurrency.
		for n := 1 + rng.IntN(3); n > 0 && created < cfg.Calls && len(calls) < cfg.Concurrent; n-- {
			c, err := eng.Create(ctx, details(next, rng))
			if err != nil {
				return stats, err
			}
			next++
			created++
			stats.Calls++
			pace := 4
			if rng.IntN(8) == 0 {
				pace = 40
			}
			calls = append(calls, live{c: c, pace: pace, sleepy: rng.Uint64()})
		}
		if cfg.StopEarly && created == cfg.Calls {
			stats.Live = len(calls)
			break
		}
		// Each live call acts now and then.
		for _, l := range calls {
			st := l.c.State()
			if spec.Terminal(st) || rng.IntN(l.pace) != 0 {
				continue
			}
			if _, _, timed := spec.Timeout(st); timed && l.sleepy>>(4*(index[st]%16))&15 == 0 {
				continue
			}
			if err := act(ctx, spec, l.c, st, rng); err != nil {
				return stats, err
			}
		}
		clock.Advance(time.Second)
		// Forget ended calls.
		kept := calls[:0]
		for _, l := range calls {
			if st := l.c.State(); spec.Terminal(st) {
				stats.Outcomes[st]++
			} else {
				kept = append(kept, l)
			}
		}
		calls = kept
	}
	if err := out.Flush(); err != nil {
		return stats, err
	}
	return stats, bw.Flush()
}

// act applies a random input to c, in state st. Calls mostly go forward:
// triggers into live states, and end, weigh eight times the others.
func act(ctx context.Context, spec *fsm.Spec, c *call.Call, st fsm.State, rng *rand.Rand) error {
	var choices []fsm.Trigger
	for _, tr := range spec.Allowed(st) {
		to, _ := spec.Next(st, tr)
		switch {
		case tr == fsm.Timeout:
		case tr == fsm.End || !spec.Terminal(to):
			for range 8 {
				choices = append(choices, tr)
			}
		default:
			choices = append(choices, tr)
		}
	}
	if len(choices) == 0 {
		return nil
	}
	in := call.Input{Trigger: choices[rng.IntN(len(choices))]}
	if to, _ := spec.Next(st, in.Trigger); spec.NeedsParticipant(to) {
		in.Participant = []event.Participant{event.User, event.Agent}[rng.IntN(2)]
	}
	if _, err := c.Apply(ctx, in); err != nil && !errors.Is(err, call.ErrCallEnded) {
		return err
	}
	return nil
}

// details are seed-sized: a generated line is about as long as the seed's.
func details(id int64, rng *rand.Rand) call.Details {
	var sched *int64
	if rng.IntN(3) == 0 {
		v := 9000 + id
		sched = &v
	}
	agents := []string{"Sasha", "Aiswarya Menon", "Ravi", "Priya Natarajan"}
	agent := agents[rng.IntN(len(agents))]
	return call.Details{
		CallID: id, UserID: 50000 + rng.Int64N(10000), ScheduleID: sched,
		Agent: event.AgentInfo{Name: agent, Email: fmt.Sprintf("agent%d@example.com", rng.IntN(100))},
		User:  event.UserInfo{Name: "Demo Vishal", Email: fmt.Sprintf("customer%d@example.com", id), CountryCode: "+91"},
		Meta: event.Meta{Product: event.Product{
			Name: "Wireless Headphones", ID: fmt.Sprintf("SKU-%d", 100+rng.IntN(900)),
			URL: "https://example.com/products/headphones",
		}},
	}
}

func uuid(rng *rand.Rand) string {
	a, b := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", a>>32, a>>16&0xffff, a&0xfff, b>>52, b&0xffffffffffff)
}
