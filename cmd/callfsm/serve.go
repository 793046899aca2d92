package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/webhook"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// serveCmd runs the engine as an HTTP service: callfsm serve.
type serveCmd struct {
	stdout, stderr io.Writer

	addr            string
	dataDir         string
	webhooks        stringsFlag
	webhookSecret   string
	token           string
	timeouts        timeoutFlag
	fsync           string
	grace           time.Duration
	shutdownTimeout time.Duration
	nats            natsFlags // --nats: run as a node of a cluster over JetStream
	replicas        int

	// With --nats, the webhook consumers' AckWait and PinnedTTL; zero
	// means webhook's defaults. Tests shorten them.
	webhookAckWait, webhookPinnedTTL time.Duration

	// clock is the engine's clock; nil means the real one. Tests set a
	// virtual clock to drive timeouts without waiting.
	clock timeout.Clock
	// ready, if set, receives the address the server listens on.
	ready chan<- string
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string { return strings.Join(*f, " ") }

// Set adds the value's space-separated words (a URL holds no raw space),
// so CALLFSM_WEBHOOK can list several URLs.
func (f *stringsFlag) Set(v string) error {
	words := strings.Fields(v)
	if len(words) == 0 {
		return errors.New("empty value")
	}
	*f = append(*f, words...)
	return nil
}

func (s *serveCmd) command() *ffcli.Command {
	fs := newFlagSet("serve", s.stderr)
	fs.StringVar(&s.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&s.dataDir, "data-dir", "./callfsm-data", "directory of the event log, webhook cursors and dead letters")
	fs.Var(&s.webhooks, "webhook", "POST every event to this URL (repeatable; CALLFSM_WEBHOOK takes a space-separated list)")
	fs.StringVar(&s.webhookSecret, "webhook-secret", "", "Standard Webhooks signing secret (whsec_...); required with --webhook")
	fs.StringVar(&s.token, "token", "", "require Authorization: Bearer TOKEN on every /v1 request")
	fs.Var(&s.timeouts, "timeout", "change a state's timeout, as STATE=DURATION (repeatable; 0 switches it off)")
	fs.StringVar(&s.fsync, "fsync", "always", "when the event log is fsynced: always (before acknowledging), interval (every 100ms) or never")
	fs.DurationVar(&s.grace, "grace", call.DefaultGrace, "how long an ended call's id still answers 'already ended' and its events stay readable")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long to drain requests and webhook deliveries")
	s.nats.register(fs)
	fs.IntVar(&s.replicas, "replicas", 1, "with --nats: replicas of the JetStream streams a node creates (3 in a NATS cluster)")
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "callfsm serve [flags]",
		ShortHelp:  "run the engine as an HTTP service with a durable event log and signed webhooks",
		LongHelp: "Serves the HTTP API on --addr. Every event is appended to the event log in\n" +
			"--data-dir before it is acknowledged or delivered; on start, live calls are\n" +
			"rebuilt from that log and their timeouts re-armed.\n\n" +
			"With --nats, the node is one of many sharing calls over NATS JetStream (see\n" +
			"docs/cluster.md): the event log is the JetStream stream --stream, timeouts\n" +
			"are JetStream message schedules, and --data-dir keeps only webhook dead\n" +
			"letters. Every flag also reads a CALLFSM_* environment variable\n" +
			"(--data-dir: CALLFSM_DATA_DIR, --nats: CALLFSM_NATS).",
		FlagSet: fs,
		Options: envOptions,
		Exec:    s.exec,
	}
}

func (s *serveCmd) exec(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("serve takes no arguments, got %q", args)
	}
	spec, err := s.timeouts.spec()
	if err != nil {
		return err
	}
	policy, err := eventlog.ParseSyncPolicy(s.fsync)
	if err != nil {
		return usagef("--fsync: %v", err)
	}
	if s.grace < 0 {
		return usagef("--grace %v: must not be negative", s.grace)
	}
	if s.shutdownTimeout <= 0 {
		return usagef("--shutdown-timeout %v: must be positive", s.shutdownTimeout)
	}
	if len(s.webhooks) > 0 && s.webhookSecret == "" {
		return usagef("--webhook needs --webhook-secret (a whsec_... secret)")
	}
	for _, u := range s.webhooks {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return usagef("--webhook %q: want an http or https URL", redact(u))
		}
	}
	if s.nats.url != "" {
		if err := s.nats.validate(); err != nil {
			return err
		}
		if s.replicas < 1 || s.replicas > 5 {
			return usagef("--replicas %d: want 1 to 5", s.replicas)
		}
		if s.clock != nil {
			return errors.New("serve: a cluster node runs on the real clock")
		}
	}
	logger := slog.New(slog.NewTextHandler(s.stderr, nil))
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil { // the log holds personal data
		return fmt.Errorf("data dir: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var b *backend
	if s.nats.url != "" {
		b, err = s.openCluster(ctx, spec, reg, logger)
	} else {
		b, err = s.openLocal(spec, policy, reg, logger)
	}
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
		defer cancel()
		_ = b.closeWithin(ctx) // at once if closed already
	}()

	api, err := httpapi.New(httpapi.Config{
		Engine: b.eng, Log: b.log, Token: s.token, Grace: s.grace, Registerer: reg, Gatherer: reg, Logger: logger,
		Now: b.now, Ready: b.ready,
	})
	if err != nil {
		return err
	}
	defer api.Close()

	var dispatchers []dispatcher
	for _, u := range s.webhooks {
		d, err := b.webhook(u, webhookName(u), logger.With("webhook", redact(u)))
		if errors.Is(err, webhook.ErrConfig) {
			return usagef("--webhook %q: %v", redact(u), err)
		}
		if err != nil { // e.g. a cursor file that does not belong to this log
			return fmt.Errorf("webhook %q: %w", redact(u), err)
		}
		dispatchers = append(dispatchers, d)
	}

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	srv := httpapi.NewServer(s.addr, api.Handler())
	logger.Info("callfsm serve: listening", append([]any{"addr", "http://" + ln.Addr().String(), "data_dir", s.dataDir,
		"events", b.log.LastSeq(), "webhooks", len(dispatchers)}, b.attrs...)...)
	if s.ready != nil {
		s.ready <- ln.Addr().String()
	}

	// Every goroutine below is owned here and stopped before exec returns.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	errs := make(chan error, 2+len(dispatchers))
	var wg sync.WaitGroup
	wg.Go(func() { errs <- api.Run(runCtx) })
	for _, d := range dispatchers {
		wg.Go(func() { errs <- d.Run(runCtx) })
	}
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})

	var failure error
	select {
	case <-ctx.Done():
		logger.Info("callfsm serve: shutting down", "deadline", s.shutdownTimeout)
	case failure = <-errs:
		logger.Error("callfsm serve: stopping after an error", "err", failure)
	}

	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	_ = api.Close() // ends SSE streams, so Shutdown does not wait on them
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("http shutdown cut short: closing connections", "err", err)
		_ = srv.Close()
	}
	b.stopEngine(sctx) // no more transitions, so no more events
	var drain sync.WaitGroup
	for i, d := range dispatchers {
		drain.Go(func() {
			if err := d.Shutdown(sctx); err != nil {
				logger.Warn("webhook drain cut short", "webhook", redact(s.webhooks[i]), "err", err)
			}
		})
	}
	drain.Wait()
	stopRun()
	wg.Wait()
	if err := b.closeWithin(sctx); err != nil && failure == nil {
		failure = err
	}
	return failure
}

// dispatcher delivers webhooks: a webhook.Dispatcher tailing the file log,
// or a webhook.JetStreamDispatcher fed by JetStream consumers.
type dispatcher interface {
	Run(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// webhookName names a webhook URL's files and consumers: a hash of the
// URL, which stays the same across restarts and nodes.
func webhookName(u string) string {
	sum := sha256.Sum256([]byte(u))
	return "webhook-" + hex.EncodeToString(sum[:6])
}

// backend is what serve runs on: the file log and an in-process engine, or
// a JetStream stream and a cluster engine.
type backend struct {
	log         eventlog.Log
	eng         httpapi.Engine
	now         func() time.Time
	ready       func(context.Context) error
	webhook     func(url, name string, logger *slog.Logger) (dispatcher, error)
	attrs       []any        // for the "listening" line
	closeEngine func() error // stops transitions; idempotent
	closers     []func() error
	closeOnce   sync.Once
	closeDone   chan struct{} // closed when close has finished
	closeErr    error
}

// stopEngine stops the engine's transitions, waiting no longer than ctx
// (a cluster engine stops a JetStream consumer: see closeWithin).
func (b *backend) stopEngine(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.closeEngine()
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// close stops the engine and releases the log (and connection), once.
func (b *backend) close() error { return b.closeWithin(context.Background()) }

// closeWithin is close, waiting no longer than ctx: with NATS unreachable,
// stopping a consumer can wait out nats.go's reconnect backoff (seconds),
// and shutdown is bounded by --shutdown-timeout. The close goes on in the
// background; the process is exiting.
func (b *backend) closeWithin(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closeDone = make(chan struct{})
		go func() {
			defer close(b.closeDone)
			_ = b.closeEngine()
			for i := len(b.closers) - 1; i >= 0; i-- {
				if err := b.closers[i](); err != nil && b.closeErr == nil {
					b.closeErr = err
				}
			}
		}()
	})
	select {
	case <-b.closeDone:
		return b.closeErr
	case <-ctx.Done():
		return fmt.Errorf("closing the event log: %w", ctx.Err())
	}
}

// openLocal opens the embedded backend: the file log in --data-dir and an
// engine whose live calls are rebuilt from it.
func (s *serveCmd) openLocal(spec *fsm.Spec, policy eventlog.SyncPolicy, reg *prometheus.Registry, logger *slog.Logger) (*backend, error) {
	log, err := eventlog.OpenFile(filepath.Join(s.dataDir, "events.jsonl"), eventlog.FileConfig{Sync: policy, Logger: logger})
	if err != nil {
		return nil, err
	}
	eng, err := call.New(call.Config{
		Spec: spec, Clock: s.clock, Emitter: eventlog.AsEmitter(log), Grace: s.grace,
		OnError: func(id int64, err error) { logger.Error("transition failed", "call_id", id, "err", err) },
	})
	if err != nil {
		log.Close()
		return nil, err
	}
	b := &backend{
		log: log, eng: eng, now: eng.Clock().Now,
		ready:       func(context.Context) error { return log.Err() }, // a log refusing appends is not ready
		closeEngine: eng.Close,
		closers:     []func() error{log.Close},
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "callfsm_timeouts_fired_total", Help: "Timeouts that fired and applied a transition.",
	}, func() float64 { return float64(eng.TimeoutsFired()) }))
	restored, err := eng.Rebuild(records(context.Background(), log))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("rebuilding live calls from %s: %w", log.Path(), err)
	}
	b.attrs = []any{"calls_restored", restored, "fsync", policy}
	b.webhook = func(u, name string, logger *slog.Logger) (dispatcher, error) {
		d, err := webhook.New(webhook.Config{
			URL: u, Secret: s.webhookSecret, Log: log,
			CursorPath:     filepath.Join(s.dataDir, name+".cursor"),
			DeadLetterPath: filepath.Join(s.dataDir, name+".dead.jsonl"),
			Registerer:     reg, Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	return b, nil
}

// openCluster opens the cluster backend: a connection to NATS, the
// JetStream log and a cluster engine. It waits for NATS (a node may start
// before its servers) until ctx is done.
func (s *serveCmd) openCluster(ctx context.Context, spec *fsm.Spec, reg *prometheus.Registry, logger *slog.Logger) (*backend, error) {
	nc, err := s.nats.connect(ctx, "serve", natsStayConnected,
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() { // not our own Close at shutdown
				logger.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, err
	}
	b := &backend{closers: []func() error{func() error { nc.Close(); return nil }}, closeEngine: func() error { return nil }}
	var log *jetstream.Log
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		log, err = jetstream.Open(ctx, jetstream.Config{Conn: nc, Stream: s.nats.stream, Replicas: s.replicas, Logger: logger})
		if err == nil {
			break
		}
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			b.close()
			return nil, fmt.Errorf("opening stream %s on %s: %w", s.nats.stream, s.nats.servers(), err)
		}
		if !isTransient(err) {
			b.close()
			return nil, fmt.Errorf("opening stream %s on %s: %w", s.nats.stream, s.nats.servers(), err)
		}
		logger.Warn("waiting for NATS JetStream", "servers", s.nats.servers(), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			b.close()
			return nil, fmt.Errorf("opening stream %s on %s: %w", s.nats.stream, s.nats.servers(), ctx.Err())
		case <-time.After(wait):
		}
	}
	b.closers = append(b.closers, log.Close)
	eng, err := cluster.New(ctx, cluster.Config{Log: log, Spec: spec, Logger: logger})
	if err != nil {
		b.close()
		return nil, err
	}
	reg.MustRegister(eng.Collector())
	b.log, b.eng, b.now, b.ready, b.closeEngine = log, eng, time.Now, eng.Ping, eng.Close
	b.attrs = []any{"nats", s.nats.servers(), "stream", log.Stream(), "replicas", log.Replicas(), "partitions", log.Partitions()}
	b.webhook = func(u, name string, logger *slog.Logger) (dispatcher, error) {
		return s.clusterWebhook(log, u, name, reg, logger)
	}
	return b, nil
}

// isTransient reports whether opening the stream may work if tried again:
// NATS or JetStream not reachable yet, rather than a stream that cannot be
// a callfsm log.
func isTransient(err error) bool {
	// Not nats.ErrConnectionClosed: a closed connection never reopens.
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsjs.ErrJetStreamNotEnabled) ||
		errors.Is(err, natsjs.ErrNoStreamResponse)
}

// redact returns a webhook URL fit for logs: without user info, query or
// fragment, where receivers often carry tokens.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// records yields every event of the log, in order.
func records(ctx context.Context, log eventlog.Log) iter.Seq2[event.Event, error] {
	return func(yield func(event.Event, error) bool) {
		for from := uint64(1); ; {
			recs, err := log.Read(ctx, from, 4096)
			if err != nil {
				yield(event.Event{}, err)
				return
			}
			if len(recs) == 0 {
				return
			}
			for _, r := range recs {
				if !yield(r.Event, nil) {
					return
				}
			}
			from = recs[len(recs)-1].Seq + 1
		}
	}
}

var _ flag.Value = (*stringsFlag)(nil)

// clusterWebhook makes the JetStream-fed delivery of one webhook URL: one
// durable consumer per partition of the stream, named after the URL, that
// every node delivering the URL shares; dead letters stay in --data-dir.
func (s *serveCmd) clusterWebhook(log *jetstream.Log, u, name string, reg *prometheus.Registry, logger *slog.Logger) (dispatcher, error) {
	d, err := webhook.NewJetStream(webhook.JetStreamConfig{
		Log: log, URL: u, Secret: s.webhookSecret, Name: name,
		DeadLetterPath: filepath.Join(s.dataDir, name+".dead.jsonl"),
		AckWait:        s.webhookAckWait, PinnedTTL: s.webhookPinnedTTL,
		Registerer: reg, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}
