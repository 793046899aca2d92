package call_test

import (
	"context"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// BenchmarkLifecycle runs whole calls (create, ring, accept, start, end: five
// events) from every core at once, on the real clock, emitting JSON Lines to
// io.Discard. One op is one call; events/s is the figure the goal names.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("JSONLines", func(b *testing.B) { benchLifecycle(b, emitter.NewJSONLines(io.Discard)) })
	b.Run("Discard", func(b *testing.B) { benchLifecycle(b, emitter.Discard) })
}

func benchLifecycle(b *testing.B, sink emitter.Emitter) {
	eng, err := call.New(call.Config{Emitter: sink})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	var next atomic.Int64
	ctx := context.Background()
	steps := []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End}
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := details(next.Add(1))
			d.SessionID = "bf0b3a76-0596-4602-a2c3-43e0db01b991"
			c, err := eng.Create(ctx, d)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range steps {
				if _, err := c.Fire(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.ReportMetric(float64(5*b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLiveRinging holds a million calls ringing, each with its ring
// timer armed on the real clock, and reports the heap each one holds.
func BenchmarkLiveRinging(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		eng, err := call.New(call.Config{})
		if err != nil {
			b.Fatal(err)
		}
		for id := int64(1); id <= n; id++ {
			d := details(id)
			d.SessionID = "bf0b3a76-0596-4602-a2c3-43e0db01b991"
			c, err := eng.Create(ctx, d)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Fire(ctx, fsm.Ring); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/call")
		if eng.Len() != n {
			b.Fatalf("%d live calls, want %d", eng.Len(), n)
		}
		_ = eng.Close()
	}
}

// BenchmarkRingTimeoutLateness rings 100,000 calls on the real clock, paced
// over the ring timeout so that all 100,000 timers are armed at once when the
// first fires (as in steady traffic), and measures how late each missed event
// is emitted after its deadline. The ring timeout is shortened to 3 s to keep
// the run short; lateness does not depend on it.
func BenchmarkRingTimeoutLateness(b *testing.B) {
	const n = 100_000
	const ring = 3 * time.Second
	ctx := context.Background()
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{fsm.Ringing: ring})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		deadlines := make([]time.Time, n+1) // by call id; written before the timer is armed
		late := make([]time.Duration, n+1)
		var wg sync.WaitGroup
		wg.Add(n)
		sink := emitter.Func(func(_ context.Context, ev event.Event) error {
			if ev.Event == "popin_outgoing_call_missed" {
				late[ev.CallID] = time.Since(deadlines[ev.CallID])
				wg.Done()
			}
			return nil
		})
		eng, err := call.New(call.Config{Spec: spec, Emitter: sink, Clock: timeout.Real{}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		pace := ring / n
		for id := int64(1); id <= n; id++ {
			if d := time.Until(start.Add(time.Duration(id) * pace)); d > time.Millisecond {
				time.Sleep(d) // pacing the load, not waiting for a timer
			}
			c, err := eng.Create(ctx, details(id))
			if err != nil {
				b.Fatal(err)
			}
			// Written before Fire, so the call's lock orders it before the
			// timer's read; at most a few µs before the engine's own
			// deadline, so lateness is if anything overstated.
			deadlines[id] = time.Now().Add(ring)
			if _, err := c.Fire(ctx, fsm.Ring); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(eng.Len()), "ringing-at-end")
		wg.Wait()
		_ = eng.Close()
		got := late[1:]
		slices.Sort(got)
		b.ReportMetric(ms(got[n/2]), "p50-late-ms")
		b.ReportMetric(ms(got[n*99/100]), "p99-late-ms")
		b.ReportMetric(ms(got[n-1]), "max-late-ms")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLifecycleLooplabOnly is the looplab/fsm share of BenchmarkLifecycle:
// the same four transitions per call on pooled machines, from every core,
// with nothing else. It bounds what the engine can reach.
func BenchmarkLifecycleLooplabOnly(b *testing.B) {
	spec := fsm.Outgoing()
	ctx := context.Background()
	steps := []string{string(fsm.Ring), string(fsm.Accept), string(fsm.Start), string(fsm.End)}
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			state := fsm.Initiated
			for _, s := range steps {
				m := spec.AcquireFSM(state)
				if err := m.Event(ctx, s); err != nil {
					b.Fatal(err)
				}
				state = fsm.State(m.Current())
				spec.ReleaseFSM(m)
			}
		}
	})
	b.ReportMetric(float64(5*b.N)/time.Since(start).Seconds(), "events/s")
}
