package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/timeout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1771832273, 0)

const sessionID = "bf0b3a76-0596-4602-a2c3-43e0db01b991"

// memLog is eventlog.Memory with hooks for tests: an Append error to
// inject, and calls as Read begins and as Wait returns. The hooks are set
// before the log is shared.
type memLog struct {
	*eventlog.Memory
	mu     sync.Mutex
	fail   error       // Append returns it when set
	onRead func()      // called as Read begins, when set
	onWait func(error) // called as Wait returns, when set
}

var _ eventlog.Log = (*memLog)(nil)

func newMemLog() *memLog { return &memLog{Memory: eventlog.NewMemory()} }

func (l *memLog) Append(ctx context.Context, ev event.Event) (uint64, error) {
	l.mu.Lock()
	fail := l.fail
	l.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	return l.Memory.Append(ctx, ev)
}

func (l *memLog) Read(ctx context.Context, from uint64, limit int) ([]eventlog.Record, error) {
	if l.onRead != nil {
		l.onRead()
	}
	return l.Memory.Read(ctx, from, limit)
}

func (l *memLog) Wait(ctx context.Context, after uint64) (err error) {
	if l.onWait != nil {
		defer func() { l.onWait(err) }()
	}
	return l.Memory.Wait(ctx, after)
}

func (l *memLog) setFail(err error) {
	l.mu.Lock()
	l.fail = err
	l.mu.Unlock()
}

// rig is an API over a real engine on a virtual clock, its events appended
// to a memLog as serve does, served on loopback.
type rig struct {
	t      testing.TB
	clock  *timeout.Virtual
	log    *memLog
	eng    *call.Engine
	api    *httpapi.API
	reg    *prometheus.Registry
	srv    *httptest.Server
	token  string // sent on every request by do, when set
	runErr chan error
}

// rigConfig is what a test may set: the API's Config (Engine, Log, Now and
// Registerer are filled in), the engine's, and whether to start Run.
type rigConfig struct {
	api     httpapi.Config
	engine  call.Config
	noRun   bool                        // the test calls r.run itself
	server  func(*httptest.Server)      // changes the server before it starts
	prepare func(*memLog, *call.Engine) // runs before the API is made
}

func newRig(t testing.TB, rc rigConfig) *rig {
	t.Helper()
	r := &rig{t: t, clock: timeout.NewVirtual(t0), log: newMemLog(), reg: prometheus.NewRegistry(), runErr: make(chan error, 1)}
	ec := rc.engine
	ec.Clock = r.clock
	ec.Emitter = emitter.Func(func(ctx context.Context, ev event.Event) error {
		_, err := r.log.Append(ctx, ev)
		return err
	})
	if ec.NewSessionID == nil {
		ec.NewSessionID = func() string { return sessionID }
	}
	eng, err := call.New(ec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	r.eng = eng
	if rc.prepare != nil {
		rc.prepare(r.log, eng)
	}

	cfg := rc.api
	cfg.Engine, cfg.Log, cfg.Now = eng, r.log, r.clock.Now
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if cfg.Registerer == nil {
		cfg.Registerer = r.reg
	}
	r.token = cfg.Token
	r.api, err = httpapi.New(cfg)
	require.NoError(t, err)

	r.srv = httptest.NewUnstartedServer(r.api.Handler())
	if rc.server != nil {
		rc.server(r.srv)
	}
	r.srv.Start()
	t.Cleanup(func() {
		require.NoError(t, r.api.Close())
		r.srv.Close()
		if !rc.noRun {
			require.NoError(t, <-r.runErr, "Run")
		}
	})
	if !rc.noRun {
		r.run()
	}
	return r
}

// run starts the API's Run; its result goes to r.runErr.
func (r *rig) run() {
	go func() { r.runErr <- r.api.Run(context.Background()) }()
}

// response is an answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with r.token, if any, and reads the answer.
func (r *rig) do(method, path, body string) response {
	r.t.Helper()
	h := http.Header{}
	if r.token != "" {
		h.Set("Authorization", "Bearer "+r.token)
	}
	return r.doHeader(method, path, body, h)
}

func (r *rig) doHeader(method, path, body string, h http.Header) response {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.srv.URL+path, rd)
	require.NoError(r.t, err)
	req.Header = h
	resp, err := r.srv.Client().Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must sends a request that has to answer want, and returns the body.
func (r *rig) must(want int, method, path, body string) []byte {
	r.t.Helper()
	resp := r.do(method, path, body)
	require.Equal(r.t, want, resp.status, "%s %s: %s", method, path, resp.body)
	return resp.body
}

// create makes a call with the seed's details over the API.
func (r *rig) create(id int64) {
	r.t.Helper()
	r.must(http.StatusCreated, "POST", "/v1/calls", seedBody(id))
}

func seedBody(id int64) string {
	b, _ := json.Marshal(map[string]any{
		"call_id": id, "user_id": 58559, "schedule_id": nil, "session_id": sessionID,
		"agent": map[string]any{"name": "Sasha", "email": "menonaiswarya0@gmail.com"},
		"user":  map[string]any{"name": "Demo Vishal", "email": "demo@example.com", "phone_number": nil, "country_code": "+91"},
		"meta":  map[string]any{"product": map[string]any{"name": "Wireless Headphones", "id": "SKU-123", "url": "https://example.com/products/headphones"}},
	})
	return string(b)
}

// problemBody is the RFC 9457 document with callfsm's extension members.
type problemBody struct {
	Type     string    `json:"type"`
	Title    string    `json:"title"`
	Status   int       `json:"status"`
	Detail   string    `json:"detail"`
	Instance string    `json:"instance"`
	Field    string    `json:"field"`
	CallID   int64     `json:"call_id"`
	State    string    `json:"state"`
	Trigger  string    `json:"trigger"`
	Allowed  *[]string `json:"allowed"`
}

// requireProblem checks that resp is a well-formed problem with status and
// type, and returns it.
func requireProblem(t *testing.T, resp response, path string, status int, typ string) problemBody {
	t.Helper()
	require.Equal(t, status, resp.status, "%s", resp.body)
	assert.Equal(t, "application/problem+json", resp.header.Get("Content-Type"))
	var p problemBody
	require.NoError(t, json.Unmarshal(resp.body, &p), "%s", resp.body)
	assert.Equal(t, typ, p.Type)
	assert.Equal(t, status, p.Status)
	assert.NotEmpty(t, p.Title)
	assert.NotEmpty(t, p.Detail)
	assert.Equal(t, path, p.Instance)
	if typ == "about:blank" {
		assert.Equal(t, http.StatusText(status), p.Title)
	}
	return p
}

// sse is one Server-Sent Events message: an event, or a comment.
type sse struct {
	id, event, data, comment string
}

// stream is an open GET /v1/events.
type stream struct {
	t      testing.TB
	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

// openStream starts GET /v1/events (path may carry a query) with the
// given Last-Event-ID header, if not empty.
func (r *rig) openStream(path, lastEventID string) *stream {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", r.srv.URL+path, nil)
	require.NoError(r.t, err)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.srv.Client().Do(req)
	require.NoError(r.t, err)
	s := &stream{t: r.t, resp: resp, rd: bufio.NewReader(resp.Body), cancel: cancel}
	r.t.Cleanup(s.close)
	require.Equal(r.t, http.StatusOK, resp.StatusCode)
	require.Equal(r.t, "text/event-stream", resp.Header.Get("Content-Type"))
	return s
}

func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next reads the next message, event or comment; io.EOF when the stream
// ended.
func (s *stream) next() (sse, error) {
	var m sse
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" {
				return m, io.EOF
			}
			return m, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if m != (sse{}) {
				return m, nil
			}
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			m.comment = strings.TrimSpace(c)
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "id":
			m.id = v
		case "event":
			m.event = v
		case "data":
			m.data = v
		default:
			s.t.Errorf("unexpected SSE field %q", line)
		}
	}
}

// nextEvent reads the next event, skipping comments.
func (s *stream) nextEvent() sse {
	s.t.Helper()
	for {
		m, err := s.next()
		require.NoError(s.t, err)
		if m.event != "" || m.data != "" {
			return m
		}
	}
}
