package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/timeout"
)

func TestAuth(t *testing.T) {
	r := newRig(t, rigConfig{api: httpapi.Config{Token: "s3cret"}})
	r.create(1)
	for _, c := range []struct {
		name, method, path, auth string
		status                   int
		challenge                string // WWW-Authenticate
	}{
		{"missing", "POST", "/v1/calls/1/ring", "", 401, `Bearer realm="callfsm"`},
		{"wrong token", "POST", "/v1/calls/1/ring", "Bearer s3cre", 401, `Bearer realm="callfsm", error="invalid_token"`},
		{"longer token", "GET", "/v1/calls/1", "Bearer s3cret2", 401, `Bearer realm="callfsm", error="invalid_token"`},
		{"other scheme", "GET", "/v1/calls", "Basic czNjcmV0", 401, `Bearer realm="callfsm"`},
		{"no scheme", "GET", "/v1/calls", "s3cret", 401, `Bearer realm="callfsm"`},
		{"unknown /v1 route", "GET", "/v1/nothing", "", 401, `Bearer realm="callfsm"`},
		{"events", "GET", "/v1/events", "", 401, `Bearer realm="callfsm"`},
		{"right token", "GET", "/v1/calls/1", "Bearer s3cret", 200, ""},
		{"scheme in any case", "GET", "/v1/calls", "bearer s3cret", 200, ""},
		{"healthz needs none", "GET", "/healthz", "", 200, ""},
		{"readyz needs none", "GET", "/readyz", "", 200, ""},
		{"metrics needs none", "GET", "/metrics", "", 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.auth != "" {
				h.Set("Authorization", c.auth)
			}
			resp := r.doHeader(c.method, c.path, "", h)
			assert.Equal(t, c.challenge, resp.header.Get("WWW-Authenticate"))
			if c.status == 401 {
				requireProblem(t, resp, c.path, 401, "about:blank")
				return
			}
			assert.Equal(t, c.status, resp.status, "%s", resp.body)
		})
	}
	v := r.view(1)
	assert.Equal(t, "initiated", v.State, "no unauthorized request reached the engine")
}

func TestNewServerLimits(t *testing.T) {
	s := httpapi.NewServer("127.0.0.1:0", http.NotFoundHandler())
	assert.Equal(t, "127.0.0.1:0", s.Addr)
	assert.Equal(t, httpapi.ReadHeaderTimeout, s.ReadHeaderTimeout)
	assert.Equal(t, httpapi.ReadTimeout, s.ReadTimeout)
	assert.Equal(t, httpapi.WriteTimeout, s.WriteTimeout)
	assert.Equal(t, httpapi.IdleTimeout, s.IdleTimeout)
	assert.Equal(t, httpapi.MaxHeaderBytes, s.MaxHeaderBytes)
	for _, d := range []any{s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout} {
		assert.NotZero(t, d)
	}

	// The limits hold on a live server.
	r := newRig(t, rigConfig{server: func(ts *httptest.Server) {
		srv := httpapi.NewServer("", ts.Config.Handler)
		ts.Config = srv
	}})
	h := http.Header{}
	h.Set("X-Big", strings.Repeat("x", httpapi.MaxHeaderBytes+8<<10))
	resp := r.doHeader("GET", "/healthz", "", h)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.status)
	r.create(1)
	requireProblem(t, r.do("POST", "/v1/calls/1/ring", strings.Repeat(" ", httpapi.MaxBodyBytes+1)), "/v1/calls/1/ring", 413, "about:blank")
	r.must(http.StatusOK, "POST", "/v1/calls/1/ring", strings.Repeat(" ", httpapi.MaxBodyBytes-2)+"{}")
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady atomic.Bool
	replaying, release := make(chan struct{}), make(chan struct{})
	r := newRig(t, rigConfig{
		noRun: true,
		api: httpapi.Config{Ready: func(context.Context) error {
			if notReady.Load() {
				return errors.New("webhooks down")
			}
			return nil
		}},
		prepare: func(log *memLog, eng *call.Engine) {
			// Events in the log before the API starts: the history must
			// replay them before it is ready.
			for id := int64(1); id <= 300; id++ {
				_, err := eng.Create(context.Background(), call.Details{CallID: id})
				require.NoError(t, err)
			}
			// The history's first read waits for the test.
			var once sync.Once
			log.onRead = func() { once.Do(func() { close(replaying); <-release }) }
		},
	})
	assert.JSONEq(t, `{"status":"ok"}`, string(r.must(200, "GET", "/healthz", "")))
	p := requireProblem(t, r.do("GET", "/readyz", ""), "/readyz", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "replayed")

	r.run()
	<-replaying
	p = requireProblem(t, r.do("GET", "/readyz", ""), "/readyz", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "replayed", "running, but not caught up")
	close(release)
	assert.Equal(t, "initiated", r.view(300).State, "replayed") // waits for the history to catch up
	assert.JSONEq(t, `{"status":"ready"}`, string(r.must(200, "GET", "/readyz", "")))

	notReady.Store(true)
	p = requireProblem(t, r.do("GET", "/readyz", ""), "/readyz", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "webhooks down")
	notReady.Store(false)

	require.NoError(t, r.api.Close())
	require.NoError(t, <-r.runErr, "Run returns nil after Close")
	r.runErr <- nil // for the rig's cleanup
	p = requireProblem(t, r.do("GET", "/readyz", ""), "/readyz", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "shutting down")
	assert.JSONEq(t, `{"status":"ok"}`, string(r.must(200, "GET", "/healthz", "")), "alive while shutting down")
}

func TestRun(t *testing.T) {
	newAPI := func(t *testing.T, log eventlog.Log) *httpapi.API {
		eng, err := call.New(call.Config{Clock: timeout.NewVirtual(t0)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = eng.Close() })
		a, err := httpapi.New(httpapi.Config{Engine: eng, Log: log})
		require.NoError(t, err)
		return a
	}
	t.Run("until ctx is done", func(t *testing.T) {
		a := newAPI(t, newMemLog())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		cancel()
		assert.NoError(t, <-done)
		assert.ErrorContains(t, a.Run(context.Background()), "twice")
		assert.NoError(t, a.Close())
		assert.NoError(t, a.Close(), "idempotent")
	})
	t.Run("Close waits for Run", func(t *testing.T) {
		log := newMemLog()
		running, stopping, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var once sync.Once
		log.onRead = func() { once.Do(func() { close(running) }) }
		log.onWait = func(err error) {
			if err != nil { // Run's context is done: hold Run here
				close(stopping)
				<-release
			}
		}
		a := newAPI(t, log)
		ran := make(chan error)
		go func() { ran <- a.Run(context.Background()) }()
		<-running
		closed := make(chan struct{})
		go func() {
			assert.NoError(t, a.Close())
			close(closed)
		}()
		<-stopping
		select {
		case <-closed:
			t.Error("Close returned while Run was still running")
		default:
		}
		close(release)
		<-closed
		assert.NoError(t, <-ran)
	})
	t.Run("twice at once", func(t *testing.T) {
		a := newAPI(t, newMemLog())
		done := make(chan error)
		go func() { done <- a.Run(context.Background()) }()
		go func() { done <- a.Run(context.Background()) }()
		err := <-done
		assert.ErrorContains(t, err, "twice")
		require.NoError(t, a.Close())
		assert.NoError(t, <-done)
	})
	t.Run("after Close", func(t *testing.T) {
		a := newAPI(t, newMemLog())
		require.NoError(t, a.Close())
		assert.NoError(t, a.Run(context.Background()))
	})
	t.Run("log closed", func(t *testing.T) {
		log := newMemLog()
		a := newAPI(t, log)
		done := make(chan error)
		go func() { done <- a.Run(context.Background()) }()
		require.NoError(t, log.Close())
		assert.ErrorIs(t, <-done, eventlog.ErrClosed)
		assert.NoError(t, a.Close())
	})
}

func TestNewValidates(t *testing.T) {
	eng, err := call.New(call.Config{})
	require.NoError(t, err)
	defer eng.Close()
	log := newMemLog()
	reg := prometheus.NewRegistry()
	_, err = httpapi.New(httpapi.Config{Engine: eng, Log: log, Registerer: reg})
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		cfg  httpapi.Config
		want string
	}{
		{"no engine", httpapi.Config{Log: log}, "Engine"},
		{"no log", httpapi.Config{Engine: eng}, "Log"},
		{"negative grace", httpapi.Config{Engine: eng, Log: log, Grace: -1}, "Grace"},
		{"negative max ended", httpapi.Config{Engine: eng, Log: log, MaxEnded: -1}, "MaxEnded"},
		{"negative heartbeat", httpapi.Config{Engine: eng, Log: log, Heartbeat: -1}, "Heartbeat"},
		{"metrics registered twice", httpapi.Config{Engine: eng, Log: log, Registerer: reg}, "registering metrics: duplicate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := httpapi.New(c.cfg)
			assert.Nil(t, a)
			assert.ErrorContains(t, err, c.want)
		})
	}
}

func TestMetrics(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.create(1)
	r.create(2)
	r.must(200, "POST", "/v1/calls/1/ring", "")
	r.must(200, "POST", "/v1/calls/2/cancel", "")
	r.do("POST", "/v1/calls/2/ring", "")
	r.view(1)
	s := r.openStream("/v1/events", "")

	text := string(r.must(200, "GET", "/metrics", ""))
	s.close()
	for _, want := range []string{
		"callfsm_calls_live 1\n",
		`callfsm_transitions_total{event="popin_outgoing_call_initiated"} 2` + "\n",
		`callfsm_transitions_total{event="popin_outgoing_call_ringing"} 1` + "\n",
		`callfsm_transitions_total{event="popin_outgoing_call_abandoned"} 1` + "\n",
		`callfsm_http_requests_total{code="201",route="POST /v1/calls"} 2` + "\n",
		`callfsm_http_requests_total{code="200",route="POST /v1/calls/{call_id}/{trigger}"} 2` + "\n",
		`callfsm_http_requests_total{code="409",route="POST /v1/calls/{call_id}/{trigger}"} 1` + "\n",
		`callfsm_http_requests_total{code="200",route="GET /v1/calls/{call_id}"} 1` + "\n",
		`callfsm_http_request_duration_seconds_count{route="POST /v1/calls"} 2` + "\n",
		"callfsm_sse_streams 1\n",
		`callfsm_history_calls{live="true"} 1` + "\n",
		`callfsm_history_calls{live="false"} 1` + "\n",
		"callfsm_history_lag_events 0\n",
	} {
		assert.Contains(t, text, want)
	}

	// Unmatched routes count under one label.
	r.do("GET", "/nothing", "")
	assert.Contains(t, string(r.must(200, "GET", "/metrics", "")), `callfsm_http_requests_total{code="404",route="unmatched"} 1`)
}

func TestMetricsOptional(t *testing.T) {
	newAPI := func(cfg httpapi.Config) *httptest.Server {
		eng, err := call.New(call.Config{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = eng.Close() })
		cfg.Engine, cfg.Log = eng, newMemLog()
		a, err := httpapi.New(cfg)
		require.NoError(t, err)
		srv := httptest.NewServer(a.Handler())
		t.Cleanup(srv.Close)
		return srv
	}
	get := func(srv *httptest.Server) (int, string) {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := get(newAPI(httpapi.Config{}))
	assert.Equal(t, 404, code, "no registry: no /metrics")

	// A gatherer alone is served; the API's metrics are not in it.
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "webhook_deliveries_total", Help: "h"}))
	code, text := get(newAPI(httpapi.Config{Gatherer: other}))
	assert.Equal(t, 200, code)
	assert.Contains(t, text, "webhook_deliveries_total 0")
	assert.NotContains(t, text, "callfsm_")

	// A registry that is also a gatherer serves everything on it.
	code, text = get(newAPI(httpapi.Config{Registerer: other}))
	assert.Equal(t, 200, code)
	assert.Contains(t, text, "webhook_deliveries_total 0")
	assert.Contains(t, text, "callfsm_calls_live 0")
}
