package timeout_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/timeout"
)

// epoch is the start of every virtual clock in these tests. It has no
// monotonic reading, so times derived from it compare with assert.Equal.
var epoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// log records, from inside callbacks, which timer fired and what the clock
// read at that moment, as "name@offset-from-epoch".
type log struct {
	v   *timeout.Virtual
	got []string
}

func (l *log) arm(name string, d time.Duration) timeout.Timer {
	return l.v.AfterFunc(d, l.record(name))
}

func (l *log) record(name string) func() {
	return func() { l.got = append(l.got, fmt.Sprintf("%s@%v", name, l.v.Now().Sub(epoch))) }
}

type arming struct {
	name string
	d    time.Duration
}

func TestVirtualAdvanceFiresDueTimersInOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		arm     []arming
		advance time.Duration
		want    []string // fired, in order, with Now() inside the callback
		wantLen int      // still armed afterwards
	}{
		{
			name:    "distinct deadlines armed out of order",
			arm:     []arming{{"c", 3 * time.Second}, {"a", time.Second}, {"b", 2 * time.Second}},
			advance: 3 * time.Second,
			want:    []string{"a@1s", "b@2s", "c@3s"},
		},
		{
			name:    "ties fire in arming order",
			arm:     []arming{{"x", time.Second}, {"y", time.Second}, {"w", time.Millisecond}, {"z", time.Second}},
			advance: time.Second,
			want:    []string{"w@1ms", "x@1s", "y@1s", "z@1s"},
		},
		{
			name:    "only timers due by the new time fire",
			arm:     []arming{{"a", time.Second}, {"b", 2 * time.Second}, {"c", 2*time.Second + 1}},
			advance: 2 * time.Second,
			want:    []string{"a@1s", "b@2s"},
			wantLen: 1,
		},
		{
			name:    "zero and negative delays are due now",
			arm:     []arming{{"a", 0}, {"b", -time.Hour}, {"c", 1}},
			advance: 0,
			want:    []string{"a@0s", "b@0s"},
			wantLen: 1,
		},
		{
			name:    "nothing armed",
			advance: time.Minute,
			want:    nil,
		},
		{
			name:    "many ties among distinct deadlines",
			arm:     []arming{{"b1", 2}, {"a1", 1}, {"b2", 2}, {"a2", 1}, {"c1", 3}, {"b3", 2}, {"a3", 1}},
			advance: 3,
			want:    []string{"a1@1ns", "a2@1ns", "a3@1ns", "b1@2ns", "b2@2ns", "b3@2ns", "c1@3ns"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &log{v: timeout.NewVirtual(epoch)}
			for _, a := range tt.arm {
				l.arm(a.name, a.d)
			}

			n := l.v.Advance(tt.advance)

			assert.Equal(t, tt.want, l.got)
			assert.Equal(t, len(tt.want), n, "Advance's count")
			assert.Equal(t, tt.wantLen, l.v.Len(), "Len after Advance")
			assert.Equal(t, epoch.Add(tt.advance), l.v.Now(), "Now after Advance")
		})
	}
}

func TestVirtualAdvanceAccumulates(t *testing.T) {
	t.Parallel()
	l := &log{v: timeout.NewVirtual(epoch)}
	l.arm("a", 1500*time.Millisecond)
	l.arm("b", 2*time.Second)
	l.arm("c", 3*time.Second)

	var counts []int
	for range 4 {
		counts = append(counts, l.v.Advance(time.Second))
	}

	assert.Equal(t, []int{0, 2, 1, 0}, counts)
	assert.Equal(t, []string{"a@1.5s", "b@2s", "c@3s"}, l.got)
	assert.Equal(t, epoch.Add(4*time.Second), l.v.Now())
}

func TestVirtualStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		d           time.Duration
		stopsBefore int           // Stop calls before advancing
		advance     time.Duration // then
		wantBefore  []bool        // results of the Stop calls before advancing
		wantFired   bool
		wantAfter   bool // result of one Stop call after advancing
	}{
		{name: "stop before deadline", d: time.Second, stopsBefore: 1, advance: 2 * time.Second, wantBefore: []bool{true}, wantFired: false, wantAfter: false},
		{name: "stop twice", d: time.Second, stopsBefore: 2, advance: 2 * time.Second, wantBefore: []bool{true, false}, wantFired: false, wantAfter: false},
		{name: "stop after firing", d: time.Second, stopsBefore: 0, advance: 2 * time.Second, wantFired: true, wantAfter: false},
		{name: "stop after firing exactly at deadline", d: time.Second, stopsBefore: 0, advance: time.Second, wantFired: true, wantAfter: false},
		{name: "stop while not yet due", d: 3 * time.Second, stopsBefore: 0, advance: 2 * time.Second, wantFired: false, wantAfter: true},
		{name: "stop a timer due now", d: 0, stopsBefore: 1, advance: 0, wantBefore: []bool{true}, wantFired: false, wantAfter: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := timeout.NewVirtual(epoch)
			fired := 0
			timer := v.AfterFunc(tt.d, func() { fired++ })
			other := v.AfterFunc(tt.d, func() {}) // a neighbour in the heap that must survive Stop

			var gotBefore []bool
			for range tt.stopsBefore {
				gotBefore = append(gotBefore, timer.Stop())
			}
			v.Advance(tt.advance)

			assert.Equal(t, tt.wantBefore, gotBefore, "Stop before advancing")
			assert.Equal(t, tt.wantFired, fired == 1, "fired")
			assert.LessOrEqual(t, fired, 1, "fired more than once")
			assert.Equal(t, tt.wantAfter, timer.Stop(), "Stop after advancing")
			assert.Equal(t, tt.advance < tt.d, other.Stop(), "the other timer is armed iff not yet due")
			assert.Zero(t, v.Len())
		})
	}
}

func TestVirtualStopInsideOwnCallbackReturnsFalse(t *testing.T) {
	t.Parallel()
	v := timeout.NewVirtual(epoch)
	var self timeout.Timer
	var got []bool
	self = v.AfterFunc(time.Second, func() { got = append(got, self.Stop()) })

	require.Equal(t, 1, v.Advance(time.Second))

	assert.Equal(t, []bool{false}, got)
}

func TestVirtualCallbacksArmAndStopDuringAdvance(t *testing.T) {
	t.Parallel()
	l := &log{v: timeout.NewVirtual(epoch)}
	var stops []string
	stop := func(name string, tm timeout.Timer) {
		stops = append(stops, fmt.Sprintf("%s:%v", name, tm.Stop()))
	}

	var c, d, g timeout.Timer
	l.v.AfterFunc(time.Second, func() { // A@1s
		l.record("A")()
		l.arm("Z", 0)                 // due at 1s, armed after B: fires right after B
		c = l.arm("C", 2*time.Second) // 3s: inside the window
		g = l.arm("G", 1500*time.Millisecond)
		l.arm("E", 10*time.Second) // 11s: outside the window, stays armed
		stop("D", d)
	})
	l.arm("B", time.Second)
	d = l.arm("D", 4*time.Second)
	l.v.AfterFunc(2*time.Second, func() { // F@2s
		l.record("F")()
		stop("G", g)
		stop("G", g)
	})

	n := l.v.Advance(5 * time.Second)

	assert.Equal(t, []string{"A@1s", "B@1s", "Z@1s", "F@2s", "C@3s"}, l.got)
	assert.Equal(t, 5, n)
	assert.Equal(t, []string{"D:true", "G:true", "G:false"}, stops)
	assert.False(t, c.Stop(), "C already fired")
	assert.Equal(t, 1, l.v.Len())
	next, ok := l.v.Next()
	assert.True(t, ok)
	assert.Equal(t, epoch.Add(11*time.Second), next)
	assert.Equal(t, epoch.Add(5*time.Second), l.v.Now())
}

func TestVirtualCallbackRearmsWithinWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		period  time.Duration
		advance time.Duration
		want    int
	}{
		{name: "ten periods", period: time.Second, advance: 10 * time.Second, want: 10},
		{name: "window ends between periods", period: time.Second, advance: 10*time.Second - 1, want: 9},
		{name: "zero period chains at one instant", period: 0, advance: 0, want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := timeout.NewVirtual(epoch)
			var at []time.Time
			var tick func()
			tick = func() {
				at = append(at, v.Now())
				if len(at) < 100 {
					v.AfterFunc(tt.period, tick)
				}
			}
			v.AfterFunc(tt.period, tick)

			n := v.Advance(tt.advance)

			assert.Equal(t, tt.want, n)
			require.Len(t, at, tt.want)
			for i, got := range at {
				assert.Equal(t, epoch.Add(time.Duration(i+1)*tt.period), got, "tick %d", i)
			}
		})
	}
}

func TestVirtualNonPositiveAndPastAdvances(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		move      func(v *timeout.Virtual) int
		wantFired int
		wantNow   time.Time
	}{
		{name: "negative Advance is a no-op", move: func(v *timeout.Virtual) int { return v.Advance(-time.Nanosecond) }, wantFired: 0, wantNow: epoch.Add(time.Hour)},
		{name: "Advance(0) fires timers due now", move: func(v *timeout.Virtual) int { return v.Advance(0) }, wantFired: 1, wantNow: epoch.Add(time.Hour)},
		{name: "AdvanceTo the past is a no-op", move: func(v *timeout.Virtual) int { return v.AdvanceTo(epoch) }, wantFired: 0, wantNow: epoch.Add(time.Hour)},
		{name: "AdvanceTo now fires timers due now", move: func(v *timeout.Virtual) int { return v.AdvanceTo(epoch.Add(time.Hour)) }, wantFired: 1, wantNow: epoch.Add(time.Hour)},
		{name: "AdvanceTo the future", move: func(v *timeout.Virtual) int { return v.AdvanceTo(epoch.Add(2 * time.Hour)) }, wantFired: 2, wantNow: epoch.Add(2 * time.Hour)},
		{name: "AdvanceTo far past is a no-op", move: func(v *timeout.Virtual) int { return v.AdvanceTo(time.Time{}) }, wantFired: 0, wantNow: epoch.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := timeout.NewVirtual(epoch)
			v.Advance(time.Hour)
			fired := 0
			v.AfterFunc(0, func() { fired++ })
			v.AfterFunc(time.Minute, func() { fired++ })

			n := tt.move(v)

			assert.Equal(t, tt.wantFired, n)
			assert.Equal(t, tt.wantFired, fired)
			assert.Equal(t, tt.wantNow, v.Now())
			assert.Equal(t, 2-tt.wantFired, v.Len())
		})
	}
}

func TestVirtualStepNextLen(t *testing.T) {
	t.Parallel()
	l := &log{v: timeout.NewVirtual(epoch)}

	assert.False(t, l.v.Step(), "Step on an empty clock")
	_, ok := l.v.Next()
	assert.False(t, ok, "Next on an empty clock")
	assert.Zero(t, l.v.Len())
	assert.Equal(t, epoch, l.v.Now(), "an empty Step does not move the clock")

	l.arm("a", 2*time.Second)
	l.arm("b", 5*time.Second)
	l.arm("c", 2*time.Second)
	l.arm("now", 0)
	l.v.AfterFunc(5*time.Second, func() { // d@5s arms e for the same instant
		l.record("d")()
		l.arm("e", 0)
	})
	assert.Equal(t, 5, l.v.Len())

	type step struct {
		next    time.Duration
		fired   []string
		now     time.Duration
		wantLen int
	}
	want := []step{
		{next: 0, fired: []string{"now@0s"}, now: 0, wantLen: 4},
		{next: 2 * time.Second, fired: []string{"a@2s", "c@2s"}, now: 2 * time.Second, wantLen: 2},
		{next: 5 * time.Second, fired: []string{"b@5s", "d@5s", "e@5s"}, now: 5 * time.Second, wantLen: 0},
	}
	for i, w := range want {
		next, ok := l.v.Next()
		require.True(t, ok, "step %d: Next", i)
		assert.Equal(t, epoch.Add(w.next), next, "step %d: Next", i)

		l.got = nil
		require.True(t, l.v.Step(), "step %d", i)

		assert.Equal(t, w.fired, l.got, "step %d", i)
		assert.Equal(t, epoch.Add(w.now), l.v.Now(), "step %d: Now", i)
		assert.Equal(t, w.wantLen, l.v.Len(), "step %d: Len", i)
	}
	assert.False(t, l.v.Step(), "Step once drained")
}

func TestVirtualStepRunsSimulationToCompletion(t *testing.T) {
	t.Parallel()
	v := timeout.NewVirtual(epoch)
	const calls = 1000
	r := rand.New(rand.NewPCG(1, 2))
	var ended int
	for range calls {
		// Each call rings, then is answered, then hangs up.
		v.AfterFunc(time.Duration(r.IntN(30))*time.Second, func() {
			v.AfterFunc(time.Duration(r.IntN(600))*time.Second, func() { ended++ })
		})
	}

	steps := 0
	for v.Step() {
		steps++
	}

	assert.Equal(t, calls, ended)
	assert.Zero(t, v.Len())
	assert.Positive(t, steps)
	assert.LessOrEqual(t, steps, 2*calls)
	assert.False(t, v.Now().After(epoch.Add(630*time.Second)))
}

func TestVirtualTimerFiresExactlyOnce(t *testing.T) {
	t.Parallel()
	v := timeout.NewVirtual(epoch)
	const n = 500
	counts := make([]int, n)
	for i := range n {
		v.AfterFunc(time.Duration(i%50)*time.Millisecond, func() { counts[i]++ })
	}

	// Move in every way the API allows, repeatedly past every deadline.
	for range 3 {
		v.Advance(0)
		v.Advance(7 * time.Millisecond)
		v.Step()
		v.AdvanceTo(v.Now().Add(20 * time.Millisecond))
		v.Advance(time.Second)
		v.Step()
	}

	for i, c := range counts {
		assert.Equal(t, 1, c, "timer %d", i)
	}
	assert.Zero(t, v.Len())
}

func TestVirtualZeroValueIsUsable(t *testing.T) {
	t.Parallel()
	var v timeout.Virtual
	fired := false
	v.AfterFunc(time.Second, func() { fired = true })

	assert.Equal(t, 1, v.Advance(time.Second))
	assert.True(t, fired)
	assert.Equal(t, time.Time{}.Add(time.Second), v.Now())
}

func TestVirtualFarDeadlinesSaturate(t *testing.T) {
	t.Parallel()
	v := timeout.NewVirtual(epoch)
	v.Advance(time.Hour)
	fired := 0
	v.AfterFunc(math.MaxInt64, func() { fired++ })

	next, ok := v.Next()
	require.True(t, ok)
	end := epoch.Add(math.MaxInt64)
	assert.Equal(t, end, next, "a deadline past the clock's range is clamped to its end")

	assert.Zero(t, v.Advance(math.MaxInt64-2*time.Hour))
	assert.Equal(t, 1, v.Advance(math.MaxInt64), "an overflowing Advance saturates")
	assert.Equal(t, 1, fired)
	assert.Equal(t, end, v.Now())
	assert.Zero(t, v.Advance(time.Second))
	assert.Equal(t, end, v.Now(), "the clock stays at its end")
}

func TestVirtualAfterFuncNilPanics(t *testing.T) {
	t.Parallel()
	v := timeout.NewVirtual(epoch)
	assert.Panics(t, func() { v.AfterFunc(time.Second, nil) })
	assert.Zero(t, v.Len())
}

func TestVirtualPanickingCallbackLeavesClockUsable(t *testing.T) {
	t.Parallel()
	l := &log{v: timeout.NewVirtual(epoch)}
	l.v.AfterFunc(time.Second, func() { panic("boom") })
	l.arm("b", 2*time.Second)

	assert.PanicsWithValue(t, "boom", func() { l.v.Advance(3 * time.Second) })
	assert.Equal(t, epoch.Add(time.Second), l.v.Now(), "Now is the panicking timer's deadline")
	assert.Equal(t, 1, l.v.Len())

	assert.Equal(t, 1, l.v.Advance(2*time.Second), "advancing again does not deadlock")
	assert.Equal(t, []string{"b@2s"}, l.got)
}

// TestVirtualConcurrentAdvancesAreSerialized starts several advances at once.
// Each callback yields the processor mid-way, so that if another goroutine
// could fire timers meanwhile, it would: the callbacks would overlap or run out
// of deadline order.
func TestVirtualConcurrentAdvancesAreSerialized(t *testing.T) {
	t.Parallel()
	const timers = 2000
	v := timeout.NewVirtual(epoch)
	var inFlight, overlaps atomic.Int32
	var mu sync.Mutex
	var order []int
	for i := range timers {
		v.AfterFunc(time.Duration(i+1)*time.Millisecond, func() {
			if inFlight.Add(1) != 1 {
				overlaps.Add(1)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			runtime.Gosched()
			inFlight.Add(-1)
		})
	}

	var wg sync.WaitGroup
	var fired atomic.Int64
	start := make(chan struct{})
	moves := []func() int{
		func() int { return v.Advance(timers * time.Millisecond) },
		func() int { return v.AdvanceTo(epoch.Add(timers * time.Millisecond)) },
		func() int {
			n := 0
			for v.Step() {
				n++
			}
			return n
		},
	}
	for i := range 6 {
		wg.Go(func() {
			<-start
			fired.Add(int64(moves[i%len(moves)]()))
		})
	}
	close(start)
	wg.Wait()

	assert.Zero(t, overlaps.Load(), "callbacks overlapped")
	assert.Len(t, order, timers)
	assert.True(t, slices.IsSorted(order), "callbacks ran out of deadline order")
	assert.LessOrEqual(t, fired.Load(), int64(timers), "more fires counted than timers")
}

// TestVirtualConcurrentUse arms, stops and advances from many goroutines at
// once. Run it with -race: callbacks write shared variables without locks,
// which is only correct if the clock serializes them.
func TestVirtualConcurrentUse(t *testing.T) {
	t.Parallel()
	const (
		armers   = 8
		perArmer = 2000
	)
	v := timeout.NewVirtual(epoch)

	type tracked struct {
		fired   atomic.Int32
		stopped atomic.Int32 // Stop calls that returned true
	}
	all := make([]tracked, armers*perArmer)

	// Written by callbacks only: the clock must serialize them.
	var lastFire time.Time
	var nonMonotonicFires int

	var armersWG, othersWG sync.WaitGroup
	done := make(chan struct{})
	for a := range armers {
		armersWG.Go(func() {
			r := rand.New(rand.NewPCG(uint64(a), 0))
			for i := range perArmer {
				tr := &all[a*perArmer+i]
				tm := v.AfterFunc(time.Duration(r.IntN(100)-10)*time.Millisecond, func() {
					tr.fired.Add(1)
					if now := v.Now(); now.Before(lastFire) {
						nonMonotonicFires++
					} else {
						lastFire = now
					}
				})
				if r.IntN(2) == 0 {
					if tm.Stop() {
						tr.stopped.Add(1)
					}
					if tm.Stop() { // a second Stop never succeeds
						tr.stopped.Add(1)
					}
				}
				_ = v.Len()
			}
		})
	}
	for range 3 {
		othersWG.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				v.Advance(time.Millisecond)
				v.Step()
				v.AdvanceTo(v.Now().Add(time.Millisecond))
			}
		})
	}
	var readerBackwards int
	othersWG.Go(func() {
		last := v.Now()
		for {
			select {
			case <-done:
				return
			default:
			}
			now := v.Now()
			if now.Before(last) {
				readerBackwards++
			}
			last = now
			_, _ = v.Next()
		}
	})

	armersWG.Wait()
	close(done)
	othersWG.Wait()
	v.Advance(time.Hour) // fire whatever is left

	assert.Zero(t, v.Len())
	assert.Zero(t, nonMonotonicFires, "Now went backwards between callbacks")
	assert.Zero(t, readerBackwards, "Now went backwards for a reader")
	for i := range all {
		fired, stopped := all[i].fired.Load(), all[i].stopped.Load()
		if !assert.Equal(t, int32(1), fired+stopped, "timer %d: fired %d times, stopped %d times", i, fired, stopped) {
			break
		}
	}
}

// TestVirtualMemoryPerTimer holds the clock to its memory budget: a million
// armed timers must fit in well under 100 MB. It is not parallel, so that no
// other test allocates while it measures.
func TestVirtualMemoryPerTimer(t *testing.T) {
	const (
		timers = million
		budget = 80 // bytes per armed timer, clock's own cost
	)
	ds := delays(timers, 0, time.Hour)
	delta, kept := heapDelta(func() any {
		v := timeout.NewVirtual(epoch)
		for _, d := range ds {
			v.AfterFunc(d, noop)
		}
		return v
	})
	runtime.KeepAlive(kept)
	runtime.KeepAlive(ds) // else freed during the measurement

	perTimer := float64(delta) / timers
	t.Logf("%.1f B per armed timer", perTimer)
	assert.LessOrEqual(t, perTimer, float64(budget))
	assert.Equal(t, timers, kept.(*timeout.Virtual).Len())
}

func TestVirtualReset(t *testing.T) {
	v := timeout.NewVirtual(time.Unix(0, 0))
	var fired []time.Duration
	tm := v.AfterFunc(10*time.Second, func() { fired = append(fired, v.Now().Sub(time.Unix(0, 0))) })

	assert.True(t, tm.Reset(20*time.Second), "armed timer: Reset reports it was armed")
	v.Advance(15 * time.Second)
	assert.Empty(t, fired, "the old deadline no longer fires")
	v.Advance(5 * time.Second)
	assert.Equal(t, []time.Duration{20 * time.Second}, fired)

	assert.False(t, tm.Reset(time.Second), "fired timer: Reset re-arms and reports false")
	v.Advance(time.Second)
	assert.Equal(t, []time.Duration{20 * time.Second, 21 * time.Second}, fired)

	require.False(t, tm.Stop())
	tm.Reset(2 * time.Second)
	require.True(t, tm.Stop())
	assert.False(t, tm.Reset(3*time.Second), "stopped timer")
	v.Advance(time.Hour)
	assert.Equal(t, []time.Duration{20 * time.Second, 21 * time.Second, 24 * time.Second}, fired)
	assert.Equal(t, 0, v.Len())
}
