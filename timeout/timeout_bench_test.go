package timeout_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callfsm/callfsm/timeout"
)

const million = 1_000_000

// far is beyond any deadline a benchmark fires, so background timers armed at
// far or later stay armed throughout.
const far = 24 * 365 * time.Hour

func noop() {}

// delays returns n pseudo-random durations in [lo, lo+span), the same on
// every run, so that benchmarks measure the clock and not the generator.
func delays(n int, lo, span time.Duration) []time.Duration {
	r := rand.New(rand.NewPCG(7, 11))
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = lo + time.Duration(r.Int64N(int64(span)))
	}
	return ds
}

// withBackground returns a clock with n timers armed at random deadlines in
// [far, 2*far): the population that every other operation works against.
func withBackground(n int) *timeout.Virtual {
	v := timeout.NewVirtual(epoch)
	for _, d := range delays(n, far, far) {
		v.AfterFunc(d, noop)
	}
	return v
}

// populations are the numbers of timers already armed when an operation is
// measured: the heap's depth is what an operation pays for.
var populations = []struct {
	name string
	n    int
}{
	{"armed=0", 0},
	{"armed=1M", million},
}

// BenchmarkVirtualAfterFunc measures arming one timer at a random deadline.
// The heap grows by one per op; it is rebuilt every 2^20 ops to bound memory.
func BenchmarkVirtualAfterFunc(b *testing.B) {
	for _, pop := range populations {
		b.Run(pop.name, func(b *testing.B) {
			const rebuild = 1 << 20
			ds := delays(rebuild, 0, far)
			v := withBackground(pop.n)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				v.AfterFunc(ds[i], noop)
				if i++; i == rebuild {
					b.StopTimer()
					v, i = withBackground(pop.n), 0
					b.StartTimer()
				}
			}
		})
	}
}

// BenchmarkVirtualArmStop measures arming one timer at a random deadline and
// stopping it.
func BenchmarkVirtualArmStop(b *testing.B) {
	for _, pop := range populations {
		b.Run(pop.name, func(b *testing.B) {
			ds := delays(1<<16, 0, 2*far)
			v := withBackground(pop.n)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				v.AfterFunc(ds[i&(1<<16-1)], noop).Stop()
				i++
			}
		})
	}
}

// BenchmarkVirtualFire measures firing one timer from Advance: one op is one
// timer popped and its (empty) callback run. Timers are armed in batches with
// the benchmark timer stopped.
func BenchmarkVirtualFire(b *testing.B) {
	for _, pop := range populations {
		b.Run(pop.name, func(b *testing.B) {
			const batch = 1 << 14
			ds := delays(batch, 0, time.Second)
			v := withBackground(pop.n)
			b.ResetTimer()
			for fired := 0; fired < b.N; {
				b.StopTimer()
				for _, d := range ds[:min(batch, b.N-fired)] {
					v.AfterFunc(d, noop)
				}
				b.StartTimer()
				fired += v.Advance(time.Second)
			}
		})
	}
}

// BenchmarkVirtualStepRearm measures a simulation in steady state: each op is
// one Step whose callback arms the next timer of the same "call", so the
// population stays constant.
func BenchmarkVirtualStepRearm(b *testing.B) {
	for _, n := range []int{1000, million} {
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			ds := delays(1<<16, time.Millisecond, time.Hour)
			v := timeout.NewVirtual(epoch)
			i := 0
			var next func()
			next = func() {
				v.AfterFunc(ds[i&(1<<16-1)], next)
				i++
			}
			for range n {
				next()
			}
			b.ReportAllocs()
			for b.Loop() {
				if !v.Step() {
					b.Fatal("no timer armed")
				}
			}
			if v.Len() != n {
				b.Fatalf("population drifted: %d armed, want %d", v.Len(), n)
			}
		})
	}
}

// heapDelta reports how many bytes of live heap build adds, after a full GC
// before and after.
func heapDelta(build func() any) (int64, any) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc), kept
}

// BenchmarkVirtualMemory arms one million timers and reports the live heap
// they take, per timer. "shared-func" counts the clock's own cost; in
// "closure-per-timer" every timer has its own closure (16 B here), as engine
// callbacks that capture a call will.
func BenchmarkVirtualMemory(b *testing.B) {
	ds := delays(million, 0, far)
	cases := []struct {
		name string
		f    func(i int) func()
	}{
		{"shared-func", func(int) func() { return noop }},
		{"closure-per-timer", func(i int) func() { return func() { _ = i } }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var perTimer float64
			for b.Loop() {
				delta, kept := heapDelta(func() any {
					v := timeout.NewVirtual(epoch)
					for i, d := range ds {
						v.AfterFunc(d, c.f(i))
					}
					return v
				})
				runtime.KeepAlive(kept)
				runtime.KeepAlive(ds) // else freed during the measurement
				perTimer = float64(delta) / million
			}
			b.ReportMetric(perTimer, "B/timer")
		})
	}
}

// BenchmarkRealTimerLateness arms 100,000 timers on the real clock at random
// deadlines between 100 ms and 1.1 s from now, and reports how late they
// fire: p50, p99 and max, in milliseconds, over every iteration.
func BenchmarkRealTimerLateness(b *testing.B) {
	const timers = 100_000
	r := rand.New(rand.NewPCG(3, 5))
	var clock timeout.Clock = timeout.Real{}
	var all []time.Duration
	for b.Loop() {
		late := make([]time.Duration, timers)
		var wg sync.WaitGroup
		wg.Add(timers)
		for i := range late {
			d := 100*time.Millisecond + time.Duration(r.Int64N(int64(time.Second)))
			deadline := time.Now().Add(d)
			clock.AfterFunc(d, func() {
				late[i] = time.Since(deadline)
				wg.Done()
			})
		}
		wg.Wait()
		all = append(all, late...)
	}
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(all[len(all)/2]), "p50-late-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-late-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-late-ms")
}
