package check

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call/check/checktest"
)

var benchLog = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	if _, err := checktest.Write(&b, checktest.Config{Calls: 30000, Concurrent: 2000, Seed: 1}); err != nil {
		panic(err)
	}
	return b.Bytes()
})

// BenchmarkCheck checks a legal engine log of about 100,000 seed-sized
// events (45 MB) from memory. events/s is the checker's throughput; B/event
// what it allocates per event.
func BenchmarkCheck(b *testing.B) {
	log := benchLog()
	for _, workers := range []int{1, 0} {
		name := "workers=GOMAXPROCS"
		if workers == 1 {
			name = "workers=1"
		}
		b.Run(name, func(b *testing.B) {
			c, err := New(Config{Workers: workers})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(log)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			events := 0
			start := time.Now()
			for b.Loop() {
				rep, err := c.Check(context.Background(), Input{Name: "bench", R: bytes.NewReader(log)})
				if err != nil || rep.Errors > 0 {
					b.Fatal(err, rep.Errors)
				}
				events += rep.Events
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(events), "B/event")
		})
	}
}
