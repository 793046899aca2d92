package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkTransitions drives whole calls (create, ring, accept, start,
// end) through the API over loopback HTTP from parallel clients, with the
// history and one SSE stream tailing the in-memory log: the API's own cost,
// without the file log's fsync. One op is one request.
func BenchmarkTransitions(b *testing.B) {
	r := newRig(b, rigConfig{})
	client := r.srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	s := r.openStream("/v1/events", "")
	go func() { // drain the stream until the rig closes it
		for {
			if _, err := s.next(); err != nil {
				return
			}
		}
	}()
	post := func(path, body string) {
		resp, err := client.Post(r.srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			b.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	var next atomic.Int64
	steps := []string{"ring", "accept", "start", "end"}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var id int64
		step := len(steps)
		for pb.Next() {
			if step == len(steps) {
				id, step = next.Add(1), 0
				post("/v1/calls", seedBody(id))
				continue
			}
			post(fmt.Sprint("/v1/calls/", id, "/", steps[step]), "")
			step++
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
