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
	transport := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	post := func(path, body string) error {
		resp, err := client.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: status %d", path, resp.StatusCode)
		}
		return nil
	}
	latencies := make([][]time.Duration, clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
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
					if err := post(path, body); err != nil {
						b.Error(err)
						return
					}
					lat = append(lat, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
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

	all := slices.Concat(latencies...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "transitions/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(drain)/float64(time.Millisecond), "webhook-lag-ms")
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
