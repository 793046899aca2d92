package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/emitter/webhook"
)

// BenchmarkServe is the load test of callfsm serve: the command as an
// operator runs it (HTTP API, event log in a data directory, one webhook
// receiver on loopback), in-process, with concurrent keep-alive clients
// each running whole calls: create, ring, accept, start, end (five
// transitions). b.N counts transitions. It reports transitions/s, the
// p50 and p99 latency of one request, and how long the webhook took to
// receive the last event after the load stopped.
//
// Clients, server and receiver share the machine's cores: on a small
// machine the figures are a lower bound on what the server alone does.
//
//	go test -run '^$' -bench Serve -benchtime 20000x ./cmd/callfsm/
func BenchmarkServe(b *testing.B) {
	for _, fsync := range []string{"interval", "always"} {
		for _, clients := range []int{16, 64} {
			b.Run(fmt.Sprintf("fsync=%s/clients=%d", fsync, clients), func(b *testing.B) {
				benchServe(b, fsync, clients)
			})
		}
	}
}

const benchCreate = `{"call_id":%d,"user_id":58559,"schedule_id":null,` +
	`"agent":{"name":"Sasha","email":"menonaiswarya0@gmail.com"},` +
	`"user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},` +
	`"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}}}`

func benchServe(b *testing.B, fsync string, clients int) {
	secret, err := webhook.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	calls := (b.N + 4) / 5
	events := int64(5 * calls)
	var received atomic.Int64
	allReceived := make(chan struct{})
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if received.Add(1) == events {
			close(allReceived)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	base, stop := benchStartServe(b, "--addr", "127.0.0.1:0", "--data-dir", b.TempDir(), "--fsync", fsync,
		"--webhook", receiver.URL, "--webhook-secret", secret)
	defer stop()
	b.ResetTimer()
	start := time.Now()
	lat := loadCalls(b, []string{base}, calls, clients)
	elapsed := time.Since(start)
	b.StopTimer()
	if b.Failed() {
		return
	}
	select {
	case <-allReceived:
	case <-time.After(5 * time.Minute): // a bound on a hang
		b.Fatalf("the webhook received %d of %d events", received.Load(), events)
	}
	drain := time.Since(start) - elapsed
	reportLoad(b, lat, elapsed)
	b.ReportMetric(float64(drain)/float64(time.Millisecond), "webhook-lag-ms")
}

// loadCalls runs calls whole calls (create, ring, accept, start, end)
// from concurrent keep-alive clients and returns every request's latency.
// With several bases (nodes of a cluster), each request of a call goes to
// the next node in turn, so that no node sees a call twice in a row.
func loadCalls(b *testing.B, bases []string, calls, clients int) []time.Duration {
	transport := &http.Transport{MaxIdleConns: clients * len(bases), MaxIdleConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	post := func(url, body string) error {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: status %d", url, resp.StatusCode)
		}
		return nil
	}
	latencies := make([][]time.Duration, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 5*calls/clients+5)
			defer func() { latencies[c] = lat }()
			for {
				id := next.Add(1)
				if id > int64(calls) {
					return
				}
				for step, path := range []string{"/v1/calls", "/ring", "/accept", "/start", "/end"} {
					body := ""
					if step == 0 {
						body = fmt.Sprintf(benchCreate, id)
					} else {
						path = fmt.Sprintf("/v1/calls/%d%s", id, path)
					}
					t0 := time.Now()
					if err := post(bases[(int(id)+step)%len(bases)]+path, body); err != nil {
						b.Error(err)
						return
					}
					lat = append(lat, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	return slices.Concat(latencies...)
}

// reportLoad reports transitions/s and the p50 and p99 request latency.
func reportLoad(b *testing.B, all []time.Duration, elapsed time.Duration) {
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "transitions/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// benchStartServe runs callfsm serve in-process, as startServe does for
// tests, and returns its base URL and a function that stops it.
func benchStartServe(b *testing.B, args ...string) (base string, stop func()) {
	b.Helper()
	ready := make(chan string, 1)
	stderr := &syncBuffer{}
	c := (&serveCmd{stdout: io.Discard, stderr: stderr, ready: ready}).command()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.ParseAndRun(ctx, args) }()
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		b.Fatalf("serve did not start: %v\n%s", err, stderr.String())
	}
	return base, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("serve: %v\n%s", err, stderr.String())
		}
	}
}

// BenchmarkServeCluster is the load test of a cluster: 1, 2 or 3
// `callfsm serve --nats` nodes, in-process, on one in-process nats-server
// with file storage (replicas=1), and 2 nodes on a 3-server cluster with 3
// replicas. 64 keep-alive clients run whole calls, each request of a call
// going to the next node in turn (the worst case for a node's cache). b.N
// counts transitions. Clients, nodes and NATS servers all share the
// machine's cores.
//
//	go test -run '^$' -bench ServeCluster -benchtime 20000x ./cmd/callfsm/
func BenchmarkServeCluster(b *testing.B) {
	for _, c := range []struct{ nodes, servers int }{{1, 1}, {2, 1}, {3, 1}, {2, 3}} {
		b.Run(fmt.Sprintf("nodes=%d/replicas=%d", c.nodes, c.servers), func(b *testing.B) {
			var url string
			if c.servers == 1 {
				url = jstest.RunServer(b).ClientURL()
			} else {
				url = jstest.ClusterURLs(jstest.RunCluster(b, c.servers))
			}
			bases := make([]string, c.nodes)
			for i := range bases {
				base, stop := benchStartServe(b, "--addr", "127.0.0.1:0", "--data-dir", b.TempDir(),
					"--nats", url, "--replicas", fmt.Sprint(c.servers))
				defer stop()
				bases[i] = base
			}
			calls := (b.N + 4) / 5
			b.ResetTimer()
			start := time.Now()
			lat := loadCalls(b, bases, calls, 64)
			elapsed := time.Since(start)
			b.StopTimer()
			if !b.Failed() {
				reportLoad(b, lat, elapsed)
			}
		})
	}
}
