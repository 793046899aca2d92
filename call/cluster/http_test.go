package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
)

// serveNode serves the HTTP API of n on a loopback httptest server, as
// `callfsm serve --nats` does, until the test ends.
func serveNode(t *testing.T, n *node) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(n.eng.Collector()))
	api, err := httpapi.New(httpapi.Config{
		Engine: n.eng, Log: n.log, Registerer: reg, Gatherer: reg, Ready: n.eng.Ping,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = api.Run(ctx) }()
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		srv.Close()
		api.Close()
		cancel()
		<-done
	})
	return srv
}

// do sends a request and returns the status and body.
func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestHTTPAcrossNodes drives calls through the HTTP API of two nodes in
// turn: every node answers for every call, reads see the other node's
// writes at once, and the answers are those of a single server.
func TestHTTPAcrossNodes(t *testing.T) {
	s := jstest.RunServer(t)
	a := serveNode(t, startNode(t, s.ClientURL(), cluster.Config{}))
	b := serveNode(t, startNode(t, s.ClientURL(), cluster.Config{}))

	for id := 1; id <= 20; id++ {
		sid := strconv.Itoa(id)
		code, body := do(t, "POST", a.URL+"/v1/calls", `{"call_id":`+sid+`,"user_id":3}`)
		require.Equal(t, http.StatusCreated, code, body)
		// Read your writes on the other node.
		code, body = do(t, "GET", b.URL+"/v1/calls/"+sid, "")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"state":"initiated"`)

		code, body = do(t, "POST", b.URL+"/v1/calls/"+sid+"/ring", "")
		require.Equal(t, http.StatusOK, code, body)
		code, body = do(t, "POST", a.URL+"/v1/calls/"+sid+"/ring", "")
		require.Equal(t, http.StatusConflict, code, "ring twice, through two nodes: %s", body)
		if id%2 == 0 {
			code, body = do(t, "POST", a.URL+"/v1/calls/"+sid+"/decline", "")
			require.Equal(t, http.StatusOK, code, body)
		}
	}
	code, body := do(t, "POST", b.URL+"/v1/calls", `{"call_id":1,"user_id":3}`)
	assert.Equal(t, http.StatusConflict, code, "a live call created again through the other node: %s", body)

	code, body = do(t, "GET", b.URL+"/v1/calls?limit=5", "")
	require.Equal(t, http.StatusOK, code, body)
	var list struct {
		Calls []struct {
			CallID int64  `json:"call_id"`
			State  string `json:"state"`
		} `json:"calls"`
		Next string `json:"next"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Calls, 5)
	for i, c := range list.Calls {
		assert.Equal(t, int64(2*i+1), c.CallID, "live calls are the odd ones, in order")
		assert.Equal(t, "ringing", c.State)
	}
	assert.Equal(t, "9", list.Next)

	code, body = do(t, "GET", a.URL+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{"callfsm_cluster_transitions_total", `callfsm_stream_messages{stream="CALLFSM"}`, "callfsm_cluster_timers_waiting"} {
		assert.Contains(t, body, m)
	}
	code, _ = do(t, "GET", a.URL+"/readyz", "")
	assert.Equal(t, http.StatusOK, code)

	// With NATS gone, the nodes are not ready and say why.
	s.Shutdown()
	s.WaitForShutdown()
	code, body = do(t, "GET", b.URL+"/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	code, body = do(t, "POST", b.URL+"/v1/calls/1/accept", "")
	assert.Equal(t, http.StatusServiceUnavailable, code, "an input while JetStream is unreachable: %s", body)
}
