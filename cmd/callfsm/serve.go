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

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/webhook"
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
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "callfsm serve [flags]",
		ShortHelp:  "run the engine as an HTTP service with a durable event log and signed webhooks",
		LongHelp: "Serves the HTTP API on --addr. Every event is appended to the event log in\n" +
			"--data-dir before it is acknowledged or delivered; on start, live calls are\n" +
			"rebuilt from that log and their timeouts re-armed. Every flag also reads a\n" +
			"CALLFSM_* environment variable (--data-dir: CALLFSM_DATA_DIR).",
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
	logger := slog.New(slog.NewTextHandler(s.stderr, nil))
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil { // the log holds personal data
		return fmt.Errorf("data dir: %w", err)
	}

	log, err := eventlog.OpenFile(filepath.Join(s.dataDir, "events.jsonl"), eventlog.FileConfig{Sync: policy, Logger: logger})
	if err != nil {
		return err
	}
	defer log.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	eng, err := call.New(call.Config{
		Spec: spec, Clock: s.clock, Emitter: eventlog.AsEmitter(log), Grace: s.grace,
		OnError: func(id int64, err error) { logger.Error("transition failed", "call_id", id, "err", err) },
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "callfsm_timeouts_fired_total", Help: "Timeouts that fired and applied a transition.",
	}, func() float64 { return float64(eng.TimeoutsFired()) }))

	restored, err := eng.Rebuild(records(ctx, log))
	if err != nil {
		return fmt.Errorf("rebuilding live calls from %s: %w", log.Path(), err)
	}

	api, err := httpapi.New(httpapi.Config{
		Engine: eng, Log: log, Token: s.token, Grace: s.grace, Registerer: reg, Gatherer: reg, Logger: logger,
		Now:   eng.Clock().Now,
		Ready: func(context.Context) error { return log.Err() }, // a log refusing appends is not ready
	})
	if err != nil {
		return err
	}
	defer api.Close()

	var dispatchers []*webhook.Dispatcher
	for _, u := range s.webhooks {
		sum := sha256.Sum256([]byte(u))
		name := "webhook-" + hex.EncodeToString(sum[:6])
		d, err := webhook.New(webhook.Config{
			URL: u, Secret: s.webhookSecret, Log: log,
			CursorPath:     filepath.Join(s.dataDir, name+".cursor"),
			DeadLetterPath: filepath.Join(s.dataDir, name+".dead.jsonl"),
			Registerer:     reg, Logger: logger.With("webhook", redact(u)),
		})
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
	logger.Info("callfsm serve: listening", "addr", "http://"+ln.Addr().String(), "data_dir", s.dataDir,
		"events", log.LastSeq(), "calls_restored", restored, "webhooks", len(dispatchers), "fsync", policy)
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
	_ = eng.Close() // no more transitions, so no more events
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
	if err := log.Close(); err != nil && failure == nil {
		failure = err
	}
	return failure
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
