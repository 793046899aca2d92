package timeout

import (
	"math"
	"sync"
	"time"
)

// Virtual is a manual clock: time moves only when Advance, AdvanceTo or Step
// is called. It is safe for concurrent use.
//
// Armed timers live in a 4-ary min-heap ordered by (deadline, arming order);
// each timer knows its place in the heap, so AfterFunc, Stop and firing one
// timer each cost O(log n). An armed timer costs about 50 bytes of heap (a
// million: 50 MB), plus the caller's closure.
//
// While Advance runs, Now() reads the deadline of the timer being fired, for
// every goroutine: AfterFunc(d) called from another goroutine at that moment
// arms for that deadline plus d.
//
// Locking rules for callbacks: a callback runs in the goroutine that advances
// the clock, with no lock of the clock held, so it may call Now, AfterFunc,
// Stop, Next and Len on the same clock. It must not call Advance, AdvanceTo or
// Step on the same clock: advancing is serialized, and that call would
// deadlock. A callback that panics leaves the clock consistent and usable: the
// panicking timer counts as fired, the clock reads its deadline, and timers
// not yet fired stay armed.
//
// The zero Virtual is a valid clock that starts at the zero time.Time; use
// NewVirtual to choose the start.
type Virtual struct {
	// advance serializes Advance, AdvanceTo and Step, so that two goroutines
	// advancing at once cannot fire one timer twice or fire out of order.
	// It is held while callbacks run; mu is not.
	advance sync.Mutex

	// start is the instant of offset 0; immutable after NewVirtual.
	start time.Time

	mu   sync.Mutex // guards the fields below and every vtimer.index/f
	now  int64      // nanoseconds since start; never decreases
	seq  uint64     // arming counter, breaks deadline ties
	heap []entry    // min-heap of armed timers
}

// entry is one armed timer in the heap. The sort key is stored inline so that
// sifting compares without following pointers.
type entry struct {
	when int64  // deadline, nanoseconds since Virtual.start
	seq  uint64 // arming order
	t    *vtimer
}

func (a entry) less(b entry) bool {
	return a.when < b.when || (a.when == b.when && a.seq < b.seq)
}

// vtimer is the Timer handed out by Virtual.AfterFunc.
type vtimer struct {
	v     *Virtual // immutable
	f     func()   // immutable: Reset arms the same function again
	index int      // position in v.heap, -1 when not armed; guarded by v.mu
}

// NewVirtual returns a virtual clock whose Now is start and that has no timer
// armed.
func NewVirtual(start time.Time) *Virtual {
	return &Virtual{start: start}
}

// Now returns the current time of the clock. While a callback runs, it is the
// deadline of that callback's timer. Successive calls never go backwards.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	now := v.now
	v.mu.Unlock()
	return v.at(now)
}

// AfterFunc arms a timer that calls f once, in the goroutine advancing the
// clock, when the clock reaches Now()+d. d <= 0 means at Now(): the timer fires
// at the next Advance (including Advance(0)) or Step, or later in the current
// Advance if called from a callback. A deadline beyond the range of the clock
// is clamped to its largest time. AfterFunc panics if f is nil.
func (v *Virtual) AfterFunc(d time.Duration, f func()) Timer {
	if f == nil {
		panic("timeout: Virtual.AfterFunc called with a nil func")
	}
	t := &vtimer{v: v, f: f}
	v.mu.Lock()
	when := addSat(v.now, d)
	v.seq++
	v.push(entry{when: when, seq: v.seq, t: t})
	v.mu.Unlock()
	return t
}

// Reset re-arms the timer to call its function after d, counted from Now(),
// whether it was armed, stopped or had fired. It returns true if the timer
// was armed.
func (t *vtimer) Reset(d time.Duration) bool {
	v := t.v
	v.mu.Lock()
	defer v.mu.Unlock()
	active := t.index >= 0
	if active {
		v.removeAt(t.index)
	}
	v.seq++
	v.push(entry{when: addSat(v.now, d), seq: v.seq, t: t})
	return active
}

// Stop prevents the timer from firing. It returns true if the call stops the
// timer, false if it already fired (or is firing) or was stopped.
func (t *vtimer) Stop() bool {
	v := t.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.index < 0 {
		return false
	}
	v.removeAt(t.index)
	return true
}

// Advance moves the clock forward by d, firing every timer whose deadline is
// at or before the new time, in deadline order (ties: the order they were
// armed), each one with Now() equal to its own deadline while it runs. Timers
// armed by those callbacks that fall due within the window fire too.
// Callbacks run synchronously in the calling goroutine with no lock of the
// clock held. Advance returns how many timers fired. Advance(0) fires the
// timers due now; a negative d is a no-op that returns 0.
func (v *Virtual) Advance(d time.Duration) int {
	if d < 0 {
		return 0
	}
	v.advance.Lock()
	defer v.advance.Unlock()
	v.mu.Lock()
	return v.fire(addSat(v.now, d))
}

// AdvanceTo is Advance to the absolute time t. A t before Now() is a no-op that
// returns 0; t equal to Now() fires the timers due now.
func (v *Virtual) AdvanceTo(t time.Time) int {
	target := int64(t.Sub(v.start)) // saturates on overflow
	v.advance.Lock()
	defer v.advance.Unlock()
	v.mu.Lock()
	return v.fire(target) // a target before now fires nothing: every armed deadline is >= now
}

// Step jumps to the earliest armed deadline (if it is later than Now()) and
// fires every timer due at that instant, including those that callbacks arm
// for that same instant. It returns false, without moving the clock, when no
// timer is armed. A simulation can run to completion with
//
//	for v.Step() {
//	}
func (v *Virtual) Step() bool {
	v.advance.Lock()
	defer v.advance.Unlock()
	v.mu.Lock()
	if len(v.heap) == 0 {
		v.mu.Unlock()
		return false
	}
	v.fire(max(v.heap[0].when, v.now))
	return true
}

// Next reports the earliest armed deadline, and false if no timer is armed.
// A deadline may be at or before Now() if the timer was armed with d <= 0.
func (v *Virtual) Next() (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.heap) == 0 {
		return time.Time{}, false
	}
	return v.at(v.heap[0].when), true
}

// Len reports how many timers are armed.
func (v *Virtual) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.heap)
}

// fire pops and runs, one at a time, every timer due at or before target, then
// moves the clock to target if it is later, and returns how many fired. The
// caller holds v.advance and v.mu; fire unlocks v.mu, also while each callback
// runs (so a panicking callback leaves v.mu unlocked).
func (v *Virtual) fire(target int64) int {
	n := 0
	for len(v.heap) > 0 && v.heap[0].when <= target {
		e := v.heap[0]
		f := e.t.f
		v.removeAt(0) // disarms: a Stop from now on returns false
		v.now = max(v.now, e.when)
		v.mu.Unlock()

		n++
		f()

		v.mu.Lock()
	}
	v.now = max(v.now, target)
	v.mu.Unlock()
	return n
}

// at converts an offset of the clock into a time.Time.
func (v *Virtual) at(off int64) time.Time { return v.start.Add(time.Duration(off)) }

// addSat returns now+d, clamped to [now, math.MaxInt64].
func addSat(now int64, d time.Duration) int64 {
	switch {
	case d <= 0:
		return now
	case int64(d) > math.MaxInt64-now:
		return math.MaxInt64
	default:
		return now + int64(d)
	}
}

// Heap operations; the caller holds v.mu.

func (v *Virtual) push(e entry) {
	v.heap = append(v.heap, e)
	v.up(len(v.heap) - 1)
}

// removeAt takes the entry at index i out of the heap and disarms its timer.
func (v *Virtual) removeAt(i int) {
	h := v.heap
	last := len(h) - 1
	t := h[i].t
	if i != last {
		h[i] = h[last]
	}
	h[last] = entry{} // drop the pointer for the garbage collector
	v.heap = h[:last]
	if i != last && !v.down(i) {
		v.up(i)
	}
	t.index = -1
	v.shrink()
}

// arity is the number of children of a node of the heap. A 4-ary heap is half
// as deep as a binary one, so a sift moves (and re-indexes, a likely cache
// miss per timer moved) half as many timers; the extra comparisons read
// adjacent entries. The Go runtime's timer heap makes the same choice.
const arity = 4

// up moves the entry at i towards the root until its parent is not greater.
func (v *Virtual) up(i int) {
	h := v.heap
	e := h[i]
	for i > 0 {
		p := (i - 1) / arity
		if !e.less(h[p]) {
			break
		}
		h[i] = h[p]
		h[i].t.index = i
		i = p
	}
	h[i] = e
	e.t.index = i
}

// down moves the entry at i towards the leaves until no child is smaller, and
// reports whether it moved.
func (v *Virtual) down(i int) bool {
	h := v.heap
	n := len(h)
	e := h[i]
	i0 := i
	for {
		first := arity*i + 1
		if first >= n || first < 0 { // first < 0: int overflow
			break
		}
		c := first
		for r := first + 1; r < min(first+arity, n); r++ {
			if h[r].less(h[c]) {
				c = r
			}
		}
		if !h[c].less(e) {
			break
		}
		h[i] = h[c]
		h[i].t.index = i
		i = c
	}
	h[i] = e
	e.t.index = i
	return i > i0
}

// minShrinkCap is the capacity under which the heap's backing array is never
// shrunk.
const minShrinkCap = 1 << 10

// shrink halves the backing array once it is at most a quarter full, so that a
// burst of a million timers does not pin its memory forever. Growth (append)
// and shrinking are both amortized O(1).
func (v *Virtual) shrink() {
	c := cap(v.heap)
	if c <= minShrinkCap || len(v.heap) > c/4 {
		return
	}
	h := make([]entry, len(v.heap), c/2)
	copy(h, v.heap)
	v.heap = h
}
