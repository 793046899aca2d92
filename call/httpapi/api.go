// Package httpapi is callfsm's HTTP API: a JSON API over an Engine (a
// call.Engine in one process, or a cluster.Engine over NATS JetStream), the
// history of recent calls and a Server-Sent Events stream of every event,
// both read from the event log, plus health, readiness and Prometheus
// metrics.
//
// The event log (emitter/eventlog) is the one source of events: the engine's
// emitter appends every event to it before the transition commits, and the
// history and the SSE streams tail it. There is no second in-memory fan-out
// that could disagree with the log, and an SSE client can resume from any
// sequence number the log still holds.
//
// Endpoints:
//
//	POST /v1/calls                        create a call                → 201
//	POST /v1/calls/{call_id}/{trigger}    apply a trigger              → 200
//	GET  /v1/calls/{call_id}              state and events so far      → 200
//	GET  /v1/calls?limit=N&after=ID       live calls by call_id, paged → 200
//	GET  /v1/events                       Server-Sent Events           → 200
//	GET  /healthz, /readyz, /metrics
//
// Errors are application/problem+json (RFC 9457) with the extension members
// field, call_id, state, trigger and allowed where they apply.
//
// Request bodies are at most MaxBodyBytes (413 beyond) and are strict:
// call_id (a positive integer) and user_id (a non-negative integer) are
// required, every other member of the seed's schema is optional, and an
// ill-typed member, an unknown member (at any depth) or anything after the
// JSON object is a 400 naming the field ("call_id: want integer, got
// string", "agent.nickname: unknown field"). Unknown members are refused
// because the schema is the seed's, fixed: a misspelt "sesion_id" silently
// dropped would create a call with a made-up session_id, and the caller
// would learn of it from its events.
//
// The history keeps each live call and, for Config.Grace after its last
// event's timestamp, each ended one, up to Config.MaxEnded ended calls
// (about 1 KB each for a five-event call).
//
// An API is made with New, served with Handler (NewServer gives an
// http.Server with timeouts set), kept current by Run, and stopped by Close.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/fsm"
)

// MaxBodyBytes is the largest request body accepted; larger ones get 413.
const MaxBodyBytes = 64 << 10

// DefaultHeartbeat is how often, by default, an idle SSE stream gets a
// comment line, so that proxies and clients see the connection alive.
const DefaultHeartbeat = 15 * time.Second

// DefaultMaxEnded is how many ended calls the history keeps, by default, for
// GET /v1/calls/{call_id}; see Config.MaxEnded.
const DefaultMaxEnded = 100_000

// Engine runs the calls the API drives: *call.Engine in one process,
// *cluster.Engine (call/cluster) over NATS JetStream for many. Its errors
// are call's: *call.CallError, *call.TransitionError, *call.EmitError…
type Engine interface {
	// Spec returns the lifecycle.
	Spec() *fsm.Spec
	// Start creates a call and returns its details, session_id filled.
	Start(ctx context.Context, d call.Details) (call.Details, error)
	// Apply applies an input to a call and returns its state afterwards.
	Apply(ctx context.Context, id int64, in call.Input) (fsm.State, error)
}

// Config configures an API. Engine and Log are required; every other zero
// value means the default its comment gives.
type Config struct {
	// Engine runs the calls. Required.
	Engine Engine
	// Log is the event log the Engine's emitter appends to. The history and
	// the SSE streams tail it. Required.
	Log eventlog.Log
	// Token, when set, is required on every /v1 request as
	// "Authorization: Bearer <token>" (compared in constant time); others
	// get 401. /healthz, /readyz and /metrics are never authenticated.
	Token string
	// Grace is how long an ended call's history answers
	// GET /v1/calls/{call_id}, counted from its last event's timestamp.
	// Zero means call.DefaultGrace; negative is an error. Give it the
	// Engine's Grace.
	Grace time.Duration
	// MaxEnded bounds the ended calls the history keeps: past it the oldest
	// are forgotten before their Grace is over. Zero means DefaultMaxEnded;
	// negative is an error.
	MaxEnded int
	// Registerer receives the API's metrics. Nil means none are registered.
	Registerer prometheus.Registerer
	// Gatherer is what GET /metrics serves. Nil means the Registerer, if it
	// is also a Gatherer (as *prometheus.Registry is); with neither,
	// /metrics is not served.
	Gatherer prometheus.Gatherer
	// Ready is an extra readiness check for GET /readyz, which also needs
	// the history to have replayed the log. Nil means none.
	Ready func(ctx context.Context) error
	// Heartbeat is how often an idle SSE stream gets a comment line. Zero
	// means DefaultHeartbeat; negative is an error.
	Heartbeat time.Duration
	// Logger receives errors no client is told about (a failing log, a
	// 500). Nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time for history eviction. Nil means time.Now; give it
	// the Engine's clock's Now when that is not the real clock.
	Now func() time.Time
}

// API is the HTTP API over an Engine. Make one with New.
type API struct {
	eng       Engine
	log       eventlog.Log
	tokenSum  [sha256.Size]byte
	hasToken  bool
	ready     func(context.Context) error
	heartbeat time.Duration
	logger    *slog.Logger
	now       func() time.Time

	triggers map[fsm.Trigger]participantRule // callable over HTTP
	hist     *history
	metrics  *metrics
	mux      *http.ServeMux

	closeCtx context.Context // done on Close
	cancel   context.CancelFunc
	mu       sync.Mutex
	run      runState      // guarded by mu
	runDone  chan struct{} // closed when Run returns
}

type runState uint8

const (
	runIdle runState = iota
	runRunning
	runOver // Run returned, or Close came first
)

// participantRule says what a trigger needs in its body's participant.
type participantRule uint8

const (
	participantNever    participantRule = iota // no transition by it enters a participant state
	participantRequired                        // every transition by it does, with none fixed
	participantEngine                          // it depends on the state: the engine decides
)

// New returns an API configured by cfg, or an error naming the bad field.
func New(cfg Config) (*API, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("httpapi: Config.Engine is nil")
	case cfg.Log == nil:
		return nil, errors.New("httpapi: Config.Log is nil")
	case cfg.Grace < 0:
		return nil, errors.New("httpapi: Config.Grace is negative")
	case cfg.MaxEnded < 0:
		return nil, errors.New("httpapi: Config.MaxEnded is negative")
	case cfg.Heartbeat < 0:
		return nil, errors.New("httpapi: Config.Heartbeat is negative")
	}
	if cfg.Grace == 0 {
		cfg.Grace = call.DefaultGrace
	}
	if cfg.MaxEnded == 0 {
		cfg.MaxEnded = DefaultMaxEnded
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{
		eng: cfg.Engine, log: cfg.Log, ready: cfg.Ready, heartbeat: cfg.Heartbeat,
		logger: cfg.Logger, now: cfg.Now, runDone: make(chan struct{}),
	}
	if cfg.Token != "" {
		a.tokenSum, a.hasToken = sha256.Sum256([]byte(cfg.Token)), true
	}
	a.closeCtx, a.cancel = context.WithCancel(context.Background())
	a.triggers = callableTriggers(cfg.Engine.Spec())
	a.hist = newHistory(cfg.Engine.Spec(), cfg.Grace, cfg.MaxEnded)
	a.metrics = newMetrics(a)
	if cfg.Registerer != nil {
		if err := a.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("httpapi: registering metrics: %w", err)
		}
	}
	gatherer := cfg.Gatherer
	if gatherer == nil {
		gatherer, _ = cfg.Registerer.(prometheus.Gatherer)
	}
	a.mux = a.routes(gatherer)
	return a, nil
}

// callableTriggers returns the triggers of spec a client may fire (all but
// the engine's timeout), each with what it needs of a participant.
func callableTriggers(spec *fsm.Spec) map[fsm.Trigger]participantRule {
	needs := make(map[fsm.Trigger][2]int) // [needing one, not needing one]
	for _, tr := range spec.Transitions() {
		if tr.Trigger == fsm.Timeout {
			continue
		}
		n := needs[tr.Trigger]
		if spec.NeedsParticipant(tr.To) && tr.Participant == "" {
			n[0]++
		} else {
			n[1]++
		}
		needs[tr.Trigger] = n
	}
	out := make(map[fsm.Trigger]participantRule, len(needs))
	for t, n := range needs {
		switch {
		case n[0] == 0:
			out[t] = participantNever
		case n[1] == 0:
			out[t] = participantRequired
		default:
			out[t] = participantEngine
		}
	}
	return out
}

// routes registers every endpoint. /metrics only with a gatherer.
func (a *API) routes(gatherer prometheus.Gatherer) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/calls", a.createCall)
	mux.HandleFunc("GET /v1/calls", a.listCalls)
	mux.HandleFunc("GET /v1/calls/{call_id}", a.getCall)
	mux.HandleFunc("POST /v1/calls/{call_id}/{trigger}", a.fireTrigger)
	mux.HandleFunc("GET /v1/events", a.streamEvents)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	if gatherer != nil {
		mux.Handle("GET /metrics", a.metrics.handler(gatherer))
	}
	return mux
}

// Handler returns the API's http.Handler: every endpoint, with
// authentication, problem+json for unmatched routes and request metrics.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

func (a *API) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h, pattern := a.mux.Handler(r)
	switch {
	case a.hasToken && isV1(r.URL.Path) && !a.authorized(sw, r):
	case pattern == "":
		serveUnmatched(sw, r, h)
	default:
		a.mux.ServeHTTP(sw, r)
	}
	if pattern == "" {
		pattern = "unmatched"
	}
	a.metrics.request(pattern, sw.status(), time.Since(start))
}

func isV1(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }

// authorized checks the bearer token and, when it is missing or wrong,
// writes the 401.
func (a *API) authorized(w http.ResponseWriter, r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		// Hashing first makes the comparison's time independent of the
		// token's length too.
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1 {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="callfsm", error="invalid_token"`)
		writeProblem(w, r, &problem{Status: http.StatusUnauthorized, Detail: "the bearer token is not valid"})
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="callfsm"`)
	writeProblem(w, r, &problem{Status: http.StatusUnauthorized, Detail: `this endpoint needs "Authorization: Bearer <token>"`})
	return false
}

// Run keeps the history current: it replays the log from its first record,
// then follows it, until ctx is done or Close is called, and returns nil.
// It returns an error if the log fails (eventlog.ErrClosed included when the
// log is closed first). GET /readyz answers 200 only while Run runs and
// has replayed the log. Run may be called once; after Close it returns nil
// at once.
func (a *API) Run(ctx context.Context) error {
	a.mu.Lock()
	switch a.run {
	case runRunning:
		a.mu.Unlock()
		return errors.New("httpapi: Run called twice")
	case runOver:
		a.mu.Unlock()
		if a.closed() {
			return nil
		}
		return errors.New("httpapi: Run called twice")
	}
	a.run = runRunning
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.run = runOver
		a.mu.Unlock()
		close(a.runDone)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(a.closeCtx, cancel)
	defer stop()
	err := a.hist.tail(ctx, a.log, a.now, a.metrics.transition)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("httpapi: following the event log: %w", err)
}

// Close ends every SSE stream (their handlers return at once, so that
// http.Server.Shutdown is not held up by them), stops Run and waits for it
// to return. Afterwards /readyz and GET /v1/events answer 503, and
// GET /v1/calls/{call_id} answers from the history as Run left it, or 503
// once the log has moved past it. Other requests are served as before. It
// is idempotent and returns nil.
func (a *API) Close() error {
	a.cancel()
	a.mu.Lock()
	st := a.run
	if st == runIdle {
		a.run = runOver // Run, if called later, returns at once
	}
	a.mu.Unlock()
	if st == runRunning {
		<-a.runDone
	}
	return nil
}

// closed reports whether Close was called.
func (a *API) closed() bool { return a.closeCtx.Err() != nil }

// statusWriter records the status a handler wrote, for metrics. Unwrap lets
// http.ResponseController reach the connection (flushes, deadlines).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// serveUnmatched runs the ServeMux's own handler for a request no pattern
// matched (404, or 405 with Allow), and writes its answer as a problem.
// Redirects pass through.
func serveUnmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	cw := &captureWriter{ResponseWriter: w}
	h.ServeHTTP(cw, r)
	switch cw.code {
	case http.StatusNotFound:
		writeProblem(w, r, &problem{Status: cw.code, Detail: "no endpoint at " + r.URL.Path})
	case http.StatusMethodNotAllowed:
		writeProblem(w, r, &problem{Status: cw.code,
			Detail: "method " + r.Method + " is not allowed here; allowed: " + w.Header().Get("Allow")})
	}
}

// captureWriter swallows a 404 or 405 answer so that it can be rewritten.
type captureWriter struct {
	http.ResponseWriter
	code int
}

func (w *captureWriter) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		w.code = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.code != 0 {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}
