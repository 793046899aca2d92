package timeout

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkHeap fails the test unless v's heap is a valid min-heap whose timers
// know their own index. It avoids testify in its loops: it runs after every
// operation of the model test.
func checkHeap(t *testing.T, v *Virtual) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, e := range v.heap {
		switch {
		case e.t.index != i:
			t.Fatalf("timer at heap[%d] thinks it is at %d", i, e.t.index)
		case e.t.f == nil:
			t.Fatalf("armed timer at heap[%d] has no func", i)
		case i > 0 && e.less(v.heap[(i-1)/arity]):
			t.Fatalf("heap[%d] is less than its parent heap[%d]", i, (i-1)/arity)
		case e.when < v.now:
			t.Fatalf("heap[%d] is overdue: deadline %d, now %d", i, e.when, v.now)
		}
	}
	for i, e := range v.heap[len(v.heap):cap(v.heap)] {
		if e.t != nil {
			t.Fatalf("vacated slot %d still points at a timer", len(v.heap)+i)
		}
	}
}

// TestVirtualMatchesModel drives a clock with random arms, stops and advances
// and compares what fires, and when, with a sorted-list model, checking the
// heap's invariants after every operation.
func TestVirtualMatchesModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 42))
		v := NewVirtual(time.Unix(0, 0))

		type modelTimer struct {
			id    int
			when  int64
			seq   int
			timer Timer
			armed bool
		}
		var model []*modelTimer
		var got, want []int // ids in firing order
		var gotAt []int64   // Now() inside each callback
		now := int64(0)

		fireModel := func(target int64) {
			var due []*modelTimer
			for _, m := range model {
				if m.armed && m.when <= target {
					due = append(due, m)
				}
			}
			slices.SortFunc(due, func(a, b *modelTimer) int {
				return cmp.Or(cmp.Compare(a.when, b.when), cmp.Compare(a.seq, b.seq))
			})
			for _, m := range due {
				m.armed = false
				want = append(want, m.id)
			}
			now = max(now, target)
		}

		for op := range 2000 {
			switch k := r.IntN(10); {
			case k < 5: // arm; small range so that ties are common
				d := time.Duration(r.IntN(40) - 5)
				m := &modelTimer{id: op, when: now + max(int64(d), 0), seq: op, armed: true}
				m.timer = v.AfterFunc(d, func() {
					got = append(got, m.id)
					gotAt = append(gotAt, v.Now().UnixNano())
					if at := v.Now().UnixNano(); at != m.when {
						t.Errorf("timer %d: Now inside callback = %d, want its deadline %d", m.id, at, m.when)
					}
				})
				model = append(model, m)
			case k < 7: // stop a random timer, armed or not
				if len(model) == 0 {
					continue
				}
				m := model[r.IntN(len(model))]
				if got := m.timer.Stop(); got != m.armed {
					t.Fatalf("seed %d op %d: Stop of timer %d = %v, want %v", seed, op, m.id, got, m.armed)
				}
				m.armed = false
			case k < 9:
				d := time.Duration(r.IntN(30) - 3)
				n := v.Advance(d)
				before := len(want)
				if d >= 0 {
					fireModel(now + int64(d))
				}
				if n != len(want)-before {
					t.Fatalf("seed %d op %d: Advance(%v) = %d, want %d", seed, op, d, n, len(want)-before)
				}
			default:
				var earliest *modelTimer
				for _, m := range model {
					if m.armed && (earliest == nil || m.when < earliest.when) {
						earliest = m
					}
				}
				if got := v.Step(); got != (earliest != nil) {
					t.Fatalf("seed %d op %d: Step = %v, want %v", seed, op, got, earliest != nil)
				}
				if earliest != nil {
					fireModel(earliest.when)
				}
			}
			if !slices.Equal(want, got) {
				require.Equal(t, want, got, "seed %d op %d: firing order", seed, op)
			}
			if now != v.Now().UnixNano() {
				t.Fatalf("seed %d op %d: Now = %d, want %d", seed, op, v.Now().UnixNano(), now)
			}
			model = slices.DeleteFunc(model, func(m *modelTimer) bool { return !m.armed && r.IntN(4) == 0 })
			armed := 0
			for _, m := range model {
				if m.armed {
					armed++
				}
			}
			if armed != v.Len() {
				t.Fatalf("seed %d op %d: Len = %d, want %d", seed, op, v.Len(), armed)
			}
			checkHeap(t, v)
		}
		require.True(t, slices.IsSorted(gotAt), "seed %d: Now went backwards across callbacks", seed)
	}
}

// TestVirtualHeapShrinks checks that the backing array of a drained heap is
// given back, and that a fired or stopped timer drops its func.
func TestVirtualHeapShrinks(t *testing.T) {
	t.Parallel()
	v := NewVirtual(time.Time{})
	const n = 1 << 16
	timers := make([]Timer, n)
	for i := range n {
		timers[i] = v.AfterFunc(time.Duration(i), func() {})
	}
	grown := cap(v.heap)
	require.GreaterOrEqual(t, grown, n)

	for i := 0; i < n; i += 2 {
		require.True(t, timers[i].Stop())
	}
	v.Advance(n)
	checkHeap(t, v)

	assert.Zero(t, v.Len())
	assert.LessOrEqual(t, cap(v.heap), minShrinkCap, "capacity after draining %d timers", n)
	for i, tm := range timers {
		require.Equal(t, -1, tm.(*vtimer).index, "timer %d", i)
	}
}
