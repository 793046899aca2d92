package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/eventlogtest"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
	"github.com/callfsm/callfsm/emitter/webhook"
)

// followLog follows the stream on its own connection until done holds
// for the records read so far, or fails the test after 30 s.
func followLog(t *testing.T, url string, done func([]eventlog.Record) bool) []eventlog.Record {
	t.Helper()
	nc := jstest.Connect(t, url)
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc})
	require.NoError(t, err)
	defer l.Close()
	return eventlogtest.Follow(t, l, done)
}

// receiver is a webhook receiver that verifies every delivery and keeps
// the events it got, in order of arrival.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []event.Event
	got    chan struct{} // signalled on every delivery
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	r := &receiver{got: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := webhook.Verify(secret, req.Header, body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("webhook: bad signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ev, err := event.Decode(body)
		if err != nil {
			t.Errorf("webhook: %v", err)
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// await waits until done holds for the events received, or fails the test
// after 60 s.
func (r *receiver) await(t *testing.T, done func([]event.Event) bool) []event.Event {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		evs := slices.Clone(r.events)
		r.mu.Unlock()
		if done(evs) {
			return evs
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("the webhook receiver got %d events, not all that were due", len(evs))
		}
	}
}

// TestServeCluster runs two `callfsm serve --nats` nodes on one
// nats-server with a webhook: calls are driven through both in turn, one
// node stops while calls ring and the other times them out on time, every
// event reaches the receiver at least once and, per call, in order, and
// the stream, exported by `callfsm log`, checks clean.
func TestServeCluster(t *testing.T) {
	s := jstest.RunServer(t)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	recv := newReceiver(t, secret)
	args := []string{"--nats", s.ClientURL(), "--timeout", "ringing=2s", "--webhook", recv.URL, "--webhook-secret", secret}
	node := func() *server {
		// Short consumer timings, so that b takes over a's partitions
		// within seconds.
		cmd := &serveCmd{webhookAckWait: time.Second, webhookPinnedTTL: 3 * time.Second}
		return startServeCmd(t, cmd, append(args, "--data-dir", t.TempDir())...)
	}
	a, b := node(), node()
	nodes := []*server{a, b}

	const calls = 20
	for id := 1; id <= calls; id++ {
		code, body := nodes[id%2].do(t, "POST", "/v1/calls", fmt.Sprintf(`{"call_id":%d,"user_id":1}`, id))
		require.Equal(t, http.StatusCreated, code, "%v", body)
		code, body = nodes[(id+1)%2].do(t, "POST", fmt.Sprintf("/v1/calls/%d/ring", id), "")
		require.Equal(t, http.StatusOK, code, "%v", body)
		if id%2 == 0 { // even calls are answered, through both nodes
			for i, tr := range []string{"accept", "start", "end"} {
				code, body = nodes[(id+i)%2].do(t, "POST", fmt.Sprintf("/v1/calls/%d/%s", id, tr), "")
				require.Equal(t, http.StatusOK, code, "%s: %v", tr, body)
			}
		}
	}
	code, body := b.do(t, "GET", "/v1/calls/2", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "successful", body["state"])
	code, _ = a.do(t, "GET", "/readyz", "")
	assert.Equal(t, http.StatusOK, code)

	// Node a stops while the odd calls ring: b times them all out.
	a.shutdown(t)
	recs := followLog(t, s.ClientURL(), func(recs []eventlog.Record) bool {
		missed := 0
		for _, r := range recs {
			if r.Event.Event == "popin_outgoing_call_missed" {
				missed++
			}
		}
		return missed == calls/2
	})
	rang := map[int64]int64{}
	for _, r := range recs {
		switch r.Event.Event {
		case "popin_outgoing_call_ringing":
			rang[r.Event.CallID] = r.Event.Timestamp
		case "popin_outgoing_call_missed":
			assert.Equal(t, rang[r.Event.CallID]+2, r.Event.Timestamp, "call %d: missed stamped with its deadline", r.Event.CallID)
		}
	}

	// The cluster's log, exported and checked.
	out := filepath.Join(t.TempDir(), "cluster.jsonl")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"log", "--nats", s.ClientURL(), "-o", out}, &stdout, &stderr), stderr.String())
	stderr.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"check", "--timeout", "ringing=2s", "--strict", out}, &stdout, &stderr),
		"check: %s%s", stdout.String(), stderr.String())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, len(recs), bytes.Count(data, []byte("\n")))

	// Every event reached the receiver, each call's in order (a redelivery
	// may repeat an event: at least once).
	want := map[int64][]string{}
	for _, r := range recs {
		want[r.Event.CallID] = append(want[r.Event.CallID], r.Event.Event)
	}
	firstSeen := func(evs []event.Event) map[int64][]string {
		got := map[int64][]string{}
		seen := map[string]bool{}
		for _, ev := range evs {
			key := fmt.Sprint(ev.CallID, ev.Event)
			if !seen[key] {
				seen[key] = true
				got[ev.CallID] = append(got[ev.CallID], ev.Event)
			}
		}
		return got
	}
	evs := recv.await(t, func(evs []event.Event) bool {
		got := firstSeen(evs)
		for id, w := range want {
			if len(got[id]) < len(w) {
				return false
			}
		}
		return true
	})
	assert.Equal(t, want, firstSeen(evs), "per call, the events first received are the call's, in order")
}

// TestServeClusterNodeKilled runs two real callfsm binaries over one
// nats-server and kills one (SIGKILL) while the calls it rang still ring:
// the other times every one of them out, stamped with its deadline, and
// answers for them.
func TestServeClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := jstest.RunServer(t)
	bin := buildCallfsm(t)
	args := []string{"serve", "--addr", "127.0.0.1:0", "--nats", s.ClientURL(), "--timeout", "ringing=2s"}
	a := startBinary(t, bin, append(args, "--data-dir", t.TempDir())...)
	b := startBinary(t, bin, append(args, "--data-dir", t.TempDir())...)

	const calls = 10
	post := func(base, path, body string) int {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for id := 1; id <= calls; id++ {
		require.Equal(t, http.StatusCreated, post(a.base, "/v1/calls", fmt.Sprintf(`{"call_id":%d,"user_id":1}`, id)))
		require.Equal(t, http.StatusOK, post(a.base, fmt.Sprintf("/v1/calls/%d/ring", id), ""))
	}
	require.NoError(t, a.cmd.Process.Kill())
	<-a.exited

	recs := followLog(t, s.ClientURL(), func(recs []eventlog.Record) bool { return len(recs) == 3*calls })
	rang := map[int64]int64{}
	for _, r := range recs {
		switch r.Event.Event {
		case "popin_outgoing_call_ringing":
			rang[r.Event.CallID] = r.Event.Timestamp
		case "popin_outgoing_call_missed":
			assert.Equal(t, rang[r.Event.CallID]+2, r.Event.Timestamp, "call %d: missed stamped with its deadline", r.Event.CallID)
		default:
			require.Equal(t, "popin_outgoing_call_initiated", r.Event.Event)
		}
	}
	resp, err := http.Get(b.base + "/v1/calls/1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `"state":"missed"`)
	assert.Contains(t, b.stderr.String(), "nats=")
}
