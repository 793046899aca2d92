package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/fsm"
)

// benchNode starts a node for a benchmark, on its own connection.
func benchNode(b *testing.B, url string, cfg cluster.Config) *node {
	b.Helper()
	nc := jstest.Connect(b, url)
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc})
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log = l
	eng, err := cluster.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	n := &node{nc: nc, log: l, eng: eng}
	b.Cleanup(n.stop)
	return n
}

// BenchmarkApply is the engine without HTTP: 64 goroutines run whole calls
// (create, ring, accept, start, end) on 1 or 2 nodes of one in-process
// nats-server, each input of a call going to the next node in turn. b.N
// counts transitions.
//
//	go test -run '^$' -bench Apply -benchtime 20000x ./call/cluster/
func BenchmarkApply(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			url := jstest.RunServer(b).ClientURL()
			ns := make([]*node, nodes)
			for i := range ns {
				ns[i] = benchNode(b, url, cluster.Config{})
			}
			calls := int64((b.N + 4) / 5)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range 64 {
				wg.Go(func() {
					ctx := context.Background()
					for {
						id := next.Add(1)
						if id > calls {
							return
						}
						if _, err := ns[id%int64(nodes)].eng.Create(ctx, details(id)); err != nil {
							b.Error(err)
							return
						}
						for i, tr := range []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End} {
							if _, err := ns[(id+int64(i)+1)%int64(nodes)].eng.Fire(ctx, id, tr); err != nil {
								b.Error(err)
								return
							}
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(5*calls)/time.Since(start).Seconds(), "transitions/s")
			var conflicts uint64
			for _, n := range ns {
				conflicts += n.eng.Stats().Conflicts
			}
			b.ReportMetric(float64(conflicts)/float64(5*calls), "conflicts/transition")
		})
	}
}

// BenchmarkTimerLateness arms 100,000 ringing timeouts (the Popin
// lifecycle's 30 s) as JetStream message schedules through one node, then
// measures how late each timeout is applied: from its deadline (taken as
// 30 s after the ring request was sent, so a bound from above) to the
// moment the node's log tail sees the missed event. The calls arrive as
// fast as the node takes them (so their timeouts fall due as fast: a burst
// at the node's limit), or paced at 5,000 a second. Each runs for about a
// minute whatever b.N is.
//
//	go test -run '^$' -bench TimerLateness -benchtime 1x -timeout 10m ./call/cluster/
func BenchmarkTimerLateness(b *testing.B) {
	for _, rate := range []int{0, 5000} {
		name := "rate=max"
		if rate > 0 {
			name = fmt.Sprintf("rate=%d", rate)
		}
		b.Run(name, func(b *testing.B) { benchTimerLateness(b, rate) })
	}
}

// benchTimerLateness arms 100,000 ringing timeouts, rate calls a second
// (0: as fast as the node takes them), and measures their lateness.
func benchTimerLateness(b *testing.B, rate int) {
	const calls = 100_000
	spec := fsm.Outgoing()
	ring, _, _ := spec.Timeout(fsm.Ringing)
	url := jstest.RunServer(b).ClientURL()
	n := benchNode(b, url, cluster.Config{Spec: spec})

	var mu sync.Mutex
	late := make([]time.Duration, 0, calls)
	rangAt := make([]atomic.Int64, calls+1) // just before ring: the deadline is at least 30 s later
	done := make(chan struct{})
	n.log.OnTail(func(h jetstream.Head) {
		if h.Event.Event != "popin_outgoing_call_missed" {
			return
		}
		d := time.Since(time.Unix(0, rangAt[h.Event.CallID].Load()).Add(ring))
		mu.Lock()
		late = append(late, d)
		if len(late) == calls {
			close(done)
		}
		mu.Unlock()
	})
	b.ResetTimer()
	armStart := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			ctx := context.Background()
			for {
				id := next.Add(1)
				if id > calls {
					return
				}
				if rate > 0 { // pace the arrivals, so that deadlines come at rate a second
					time.Sleep(time.Until(armStart.Add(time.Duration(id) * time.Second / time.Duration(rate))))
				}
				if _, err := n.eng.Create(ctx, call.Details{CallID: id, UserID: 1, SessionID: "s"}); err != nil {
					b.Error(err)
					return
				}
				rangAt[id].Store(time.Now().UnixNano())
				if _, err := n.eng.Fire(ctx, id, fsm.Ring); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	armed := time.Since(armStart)
	if armed > ring {
		b.Fatalf("arming took %v, longer than the timeout: the schedules overlap their firing", armed)
	}
	select {
	case <-done:
	case <-time.After(ring + 5*time.Minute):
		b.Fatalf("%d of %d timeouts applied", len(late), calls)
	}
	b.StopTimer()
	slices.Sort(late)
	pct := func(p float64) float64 {
		return float64(late[min(len(late)-1, int(p*float64(len(late))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(calls)/armed.Seconds(), "armed/s")
	b.ReportMetric(pct(0.50), "p50-late-ms")
	b.ReportMetric(pct(0.99), "p99-late-ms")
	b.ReportMetric(pct(1), "max-late-ms")
}
