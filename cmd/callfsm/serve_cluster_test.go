package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
)

// followLog follows the stream on its own connection until done holds
// for the records read so far, or fails the test after 30 s.
func followLog(t *testing.T, url string, done func([]eventlog.Record) bool) []eventlog.Record {
	t.Helper()
	nc := jstest.Connect(t, url)
	l, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc})
	require.NoError(t, err)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []eventlog.Record
	for {
		more, err := l.Read(ctx, uint64(len(recs))+1, 4096)
		require.NoError(t, err)
		recs = append(recs, more...)
		if done(recs) {
			return recs
		}
		require.NoError(t, l.Wait(ctx, uint64(len(recs))), "the stream did not reach the expected state (%d records)", len(recs))
	}
}

// TestServeCluster runs two `callfsm serve --nats` nodes on one
// nats-server: calls are driven through both in turn, one node stops while
// calls ring and the other times them out on time, and the stream,
// exported by `callfsm log`, checks clean.
func TestServeCluster(t *testing.T) {
	s := jstest.RunServer(t)
	args := []string{"--nats", s.ClientURL(), "--timeout", "ringing=2s"}
	a := startServe(t, nil, append(args, "--data-dir", t.TempDir())...)
	b := startServe(t, nil, append(args, "--data-dir", t.TempDir())...)
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
}
