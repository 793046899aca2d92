package fsm_test

import (
	"context"
	"runtime"
	"testing"

	lfsm "github.com/looplab/fsm"

	"github.com/callfsm/callfsm/fsm"
)

// What one looplab/fsm machine costs, built new or reused from the spec's
// pool, and what one transition costs inside the library.

func BenchmarkNewFSM(b *testing.B) {
	spec := fsm.Outgoing()
	b.ReportAllocs()
	for b.Loop() {
		_ = spec.NewFSM(fsm.Initiated)
	}
}

func BenchmarkAcquireReleaseFSM(b *testing.B) {
	spec := fsm.Outgoing()
	b.ReportAllocs()
	for b.Loop() {
		spec.ReleaseFSM(spec.AcquireFSM(fsm.Initiated))
	}
}

func BenchmarkFSMEvent(b *testing.B) {
	spec := fsm.Outgoing()
	m := spec.NewFSM(fsm.Ringing)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.SetState(string(fsm.Ringing))
		if err := m.Event(ctx, string(fsm.Accept)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFSMRetained reports the heap one live machine holds (B/fsm).
func BenchmarkFSMRetained(b *testing.B) {
	spec := fsm.Outgoing()
	const n = 100_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ms := make([]*lfsm.FSM, n)
		for i := range ms {
			ms[i] = spec.NewFSM(fsm.Ringing)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/fsm")
		runtime.KeepAlive(ms)
	}
}
