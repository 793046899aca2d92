package simulate_test

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call/simulate"
)

// BenchmarkRun simulates calls with the default mix, written to
// io.Discard, on every core. One op is the whole run. events/s is the
// figure the speed goal names (a million calls, about four million events,
// in at most 10 s on the 2-core reference machine: run it with
// -bench 'Run/calls=1000000' -benchtime 1x); cpu-ns/event is the CPU time
// the process spent per event, a steadier figure on a shared machine.
func BenchmarkRun(b *testing.B) {
	for _, calls := range []int{100_000, 1_000_000} {
		b.Run("calls="+strconv.Itoa(calls), func(b *testing.B) {
			s, err := simulate.New(simulate.Config{Calls: calls, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			var events int64
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				sum, err := s.Run(context.Background(), io.Discard, nil)
				if err != nil {
					b.Fatal(err)
				}
				events += sum.Events
			}
			b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu)/float64(events), "cpu-ns/event")
			}
		})
	}
}
