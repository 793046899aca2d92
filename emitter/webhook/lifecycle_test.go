package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

func TestARestartResumesFromThePersistedCursor(t *testing.T) {
	t.Parallel()
	const total = 300
	l := newMemLog()
	appendCalls(t, l, callRange(1, 30), 10)

	// First run: the receiver answers 100 requests, then hangs.
	var arrivals atomic.Int64
	rc1 := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ request, _ int) answer {
		if arrivals.Add(1) <= 100 {
			return answer{status: 200}
		}
		<-r.Context().Done()
		return answer{status: 503}
	})
	cfg := testConfig(t, rc1.URL(), l)
	cfg.Parallel = 4
	d1 := start(t, cfg, nil)
	rc1.await(t, "100 answers and 4 hung requests", func(s *seen) bool {
		return len(s.done) >= 100 && len(s.arrived) >= 104
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	shutdownErr, runErr := d1.stop(ctx) // "crash": the hung requests are cut
	if !errors.Is(shutdownErr, context.DeadlineExceeded) || runErr != nil {
		t.Fatalf("Shutdown = %v, Run = %v; want DeadlineExceeded and nil", shutdownErr, runErr)
	}
	c1 := d1.Cursor()
	if c1 < 2 || c1 > 101 {
		t.Fatalf("cursor after the first run = %d, want in [2, 101]", c1)
	}
	if got, _ := os.ReadFile(cfg.CursorPath); string(got) != fmt.Sprintf("%d\n", c1) {
		t.Fatalf("cursor file = %q, want %d", got, c1)
	}

	// Second run, on the same cursor file, to a receiver that answers.
	rc2 := newReceiver(t, nil)
	cfg.URL = rc2.URL()
	d2 := start(t, cfg, nil)
	rc2.await(t, "the rest of the log", allDelivered(c1, total))
	if _, err := d2.stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	arrived2, _, delivered2 := rc2.snapshot()
	for _, r := range arrived2 {
		if r.seq < c1 {
			t.Errorf("the second run sent evt_%d, before its cursor %d: it did not resume", r.seq, c1)
		}
	}
	checkOrderPerCall(t, arrived2)
	_, _, got := rc1.snapshot()
	for s := range delivered2 {
		got[s] = true
	}
	for s := uint64(1); s <= total; s++ {
		if !got[s] {
			t.Errorf("evt_%d was never delivered", s)
		}
	}
	if d2.Cursor() != total+1 {
		t.Errorf("Cursor = %d, want %d", d2.Cursor(), total+1)
	}
}

func TestShutdownFinishesRequestsInProgressAndStartsNoMore(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, callRange(1, 3), 2) // evt_1..3 first, evt_4..6 second
	release := make(chan struct{})
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, _ request, _ int) answer {
		<-release
		return answer{status: 200}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.Parallel = 3
	logs := newLogSink()
	cfg.Logger = slog.New(logs)
	d := start(t, cfg, nil)
	rc.await(t, "three requests in progress", func(s *seen) bool { return len(s.arrived) == 3 })

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err, _ := d.stop(ctx)
		shutdown <- err
	}()
	logs.await(t, "webhook: stopping: no new deliveries; waiting for the requests in progress")
	appendCalls(t, l, []int64{9}, 1) // after Shutdown: not read
	close(release)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}

	arrived, _, delivered := rc.snapshot()
	if len(arrived) != 3 || len(delivered) != 3 {
		t.Errorf("%d requests, %d delivered; want the 3 in progress delivered and no more", len(arrived), len(delivered))
	}
	if got := d.Cursor(); got != 4 {
		t.Errorf("Cursor = %d, want 4", got)
	}
	if got, _ := os.ReadFile(cfg.CursorPath); string(got) != "4\n" {
		t.Errorf("cursor file = %q, want 4", got)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestShutdownDoesNotServeBackoffWaits(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{7}, 1)
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, request, int) answer {
		return answer{status: 503}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.BaseBackoff, cfg.MaxBackoff = time.Hour, time.Hour // real waits
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	logs := newLogSink()
	cfg.Logger = slog.New(logs)
	d := start(t, cfg, nil)
	logs.await(t, "webhook: attempt failed; retrying")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if shutdownErr, runErr := d.stop(ctx); shutdownErr != nil || runErr != nil {
		t.Fatalf("Shutdown = %v, Run = %v; want nil, nil (no waiting out an hour's backoff)", shutdownErr, runErr)
	}
	if got := counterValue(t, d.m.attempts); got != 1 {
		t.Errorf("attempts = %v, want 1", got)
	}
	if d.Cursor() != 1 || d.Pending() != 1 {
		t.Errorf("Cursor = %d, Pending = %d; want 1 and 1: the event is left for the next run", d.Cursor(), d.Pending())
	}
	if dls := deadLetters(t, cfg.DeadLetterPath); len(dls) != 0 {
		t.Errorf("dead letters %+v, want none", dls)
	}
	m := gather(t, reg)
	url := rc.URL()
	for name, want := range map[string]float64{
		`callfsm_webhook_queue_depth{url="` + url + `"}`: 1,
		`callfsm_webhook_cursor_lag{url="` + url + `"}`:  1,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

func TestShutdownDoesNotWaitForAHangingReceiverPastItsDeadline(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{7}, 1)
	rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ request, _ int) answer {
		<-r.Context().Done()
		return answer{status: 200}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.Timeout = time.Hour
	d := start(t, cfg, nil)
	rc.await(t, "the request", func(s *seen) bool { return len(s.arrived) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	type result struct{ shutdownErr, runErr error }
	stopped := make(chan result, 1)
	go func() {
		s, r := d.stop(ctx)
		stopped <- result{s, r}
	}()
	select {
	case res := <-stopped:
		if !errors.Is(res.shutdownErr, context.DeadlineExceeded) || res.runErr != nil {
			t.Errorf("Shutdown = %v, Run = %v; want DeadlineExceeded and nil", res.shutdownErr, res.runErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown with a 100ms deadline still waits after 30s")
	}
	rc.await(t, "the request to be cancelled", func(s *seen) bool { return len(s.done) == 1 && s.done[0].canceled })
	if d.Cursor() != 1 {
		t.Errorf("Cursor = %d, want 1", d.Cursor())
	}
}

func TestTheWindowBoundsWhatIsHeldInMemory(t *testing.T) {
	t.Parallel()
	const window, total = 64, 10_000
	l := newMemLog()
	appendCalls(t, l, callRange(1, total/5), 5)
	var (
		disp                 atomic.Pointer[Dispatcher]
		maxPending, maxSlots atomic.Int64
	)
	raise := func(m *atomic.Int64, v int64) {
		for old := m.Load(); v > old && !m.CompareAndSwap(old, v); old = m.Load() {
		}
	}
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request, request, int) answer {
		d := disp.Load()
		raise(&maxPending, int64(d.Pending()))
		raise(&maxSlots, int64(d.windowLen()))
		return answer{status: 200}
	})
	cfg := testConfig(t, rc.URL(), l)
	cfg.Window, cfg.Parallel = window, 4
	d := start(t, cfg, func(d *Dispatcher) { disp.Store(d) })
	// The first 2,000 are enough to see the window fill and slide over a
	// backlog of 10,000 (all of them take a long time under -race).
	rc.await(t, "2,000 events", allDelivered(1, 2000))
	_, _ = d.stop(context.Background())

	if got := maxSlots.Load(); got > window {
		t.Errorf("the window held %d records, more than Window %d", got, window)
	}
	if got := maxPending.Load(); got > window || got < window/2 {
		t.Errorf("Pending reached %d, want at most Window %d and at least %d (reading ahead)", got, window, window/2)
	}
	if c := d.Cursor(); c < 2001 {
		t.Errorf("Cursor = %d, want past 2000", c)
	}
	if got := d.Pending(); got > window {
		t.Errorf("Pending after Shutdown = %d, more than Window %d", got, window)
	}
}

// gather returns every sample of reg by name{labels}; histograms as
// name_count and name_sum.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[mf.GetName()+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[mf.GetName()+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	old := testEvent(1, 0)
	old.Timestamp = time.Now().Add(-100 * time.Second).Unix() // appended long ago
	for _, ev := range []event.Event{old, testEvent(2, 0), testEvent(3, 0)} {
		_, _ = l.Append(context.Background(), ev)
	}
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, req request, n int) answer {
		switch {
		case req.seq == 1 && n == 1:
			return answer{status: 503}
		case req.seq == 2:
			return answer{status: 400}
		}
		return answer{status: 200}
	})
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, rc.URL(), l)
	cfg.Registerer = reg
	var s sleeps
	d := start(t, cfg, func(d *Dispatcher) { d.sleep = s.sleep })
	rc.await(t, "every event answered", func(s *seen) bool {
		return s.delivered[1] && s.delivered[3] && len(s.done) == 4
	})
	_, _ = d.stop(context.Background())
	_, _ = l.Append(context.Background(), testEvent(4, 0)) // one not delivered

	m := gather(t, reg)
	u := `url="` + rc.URL() + `"`
	want := map[string]float64{
		`callfsm_webhook_deliveries_total{result="delivered",` + u + `}`:     2,
		`callfsm_webhook_deliveries_total{result="dead_lettered",` + u + `}`: 1,
		`callfsm_webhook_attempts_total{` + u + `}`:                          4,
		`callfsm_webhook_failures_total{reason="status_5xx",` + u + `}`:      1,
		`callfsm_webhook_failures_total{reason="status_4xx",` + u + `}`:      1,
		`callfsm_webhook_failures_total{reason="network",` + u + `}`:         0,
		`callfsm_webhook_failures_total{reason="status_429",` + u + `}`:      0,
		`callfsm_webhook_queue_depth{` + u + `}`:                             0,
		`callfsm_webhook_cursor_lag{` + u + `}`:                              1,
		`callfsm_webhook_delivery_latency_seconds_count{` + u + `}`:          2,
	}
	for name, v := range want {
		got, ok := m[name]
		if !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if sum := m[`callfsm_webhook_delivery_latency_seconds_sum{`+u+`}`]; sum < 98 || sum > 200 {
		t.Errorf("latency sum %vs, want about 100s: measured from the old event's timestamp", sum)
	}

	// Another URL shares the registry; the same URL cannot.
	cfg2 := testConfig(t, "http://127.0.0.1:1/other", l)
	cfg2.Registerer = reg
	if _, err := New(cfg2); err != nil {
		t.Errorf("a second Dispatcher on the same registry: %v", err)
	}
	cfg3 := testConfig(t, rc.URL()+"?token=different", l)
	cfg3.Registerer = reg
	var ce *ConfigError
	if _, err := New(cfg3); !errors.As(err, &ce) || ce.Field != "Registerer" {
		t.Errorf("a Dispatcher for the same URL on the same registry: %v, want a Registerer ConfigError", err)
	}
}

func TestNewRejectsABadConfig(t *testing.T) {
	t.Parallel()
	missingDir := filepath.Join(t.TempDir(), "nope", "cursor")
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
		is    error
	}{
		{"no URL", func(c *Config) { c.URL = "" }, "URL", nil},
		{"not http", func(c *Config) { c.URL = "ftp://example.com/x" }, "URL", nil},
		{"no host", func(c *Config) { c.URL = "http:///x" }, "URL", nil},
		{"not a URL", func(c *Config) { c.URL = "http://[::1" }, "URL", nil},
		{"no secret", func(c *Config) { c.Secret = "" }, "Secret", nil},
		{"bad secret", func(c *Config) { c.Secret = "hunter2" }, "Secret", ErrSecret},
		{"no log", func(c *Config) { c.Log = nil }, "Log", nil},
		{"no cursor path", func(c *Config) { c.CursorPath = "" }, "CursorPath", nil},
		{"cursor dir missing", func(c *Config) { c.CursorPath = missingDir }, "CursorPath", os.ErrNotExist},
		{"no dead-letter path", func(c *Config) { c.DeadLetterPath = "" }, "DeadLetterPath", nil},
		{"dead letters in the cursor file", func(c *Config) { c.DeadLetterPath = c.CursorPath }, "DeadLetterPath", nil},
		{"negative Parallel", func(c *Config) { c.Parallel = -1 }, "Parallel", nil},
		{"negative Window", func(c *Config) { c.Window = -1 }, "Window", nil},
		{"negative MaxAttempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts", nil},
		{"negative BaseBackoff", func(c *Config) { c.BaseBackoff = -1 }, "BaseBackoff", nil},
		{"negative MaxBackoff", func(c *Config) { c.MaxBackoff = -1 }, "MaxBackoff", nil},
		{"MaxBackoff below BaseBackoff", func(c *Config) { c.BaseBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "MaxBackoff", nil},
		{"negative Timeout", func(c *Config) { c.Timeout = -1 }, "Timeout", nil},
		{"garbage cursor file", func(c *Config) { _ = os.WriteFile(c.CursorPath, []byte("twelve\n"), 0o600) }, "CursorPath", nil},
		{"cursor 0", func(c *Config) { _ = os.WriteFile(c.CursorPath, []byte("0\n"), 0o600) }, "CursorPath", nil},
		{"cursor past the log's end", func(c *Config) { _ = os.WriteFile(c.CursorPath, []byte("5\n"), 0o600) }, "CursorPath", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newMemLog()
			appendCalls(t, l, []int64{1}, 3) // LastSeq 3: cursor 4 is fine, 5 is not
			cfg := testConfig(t, "http://127.0.0.1:1/hook", l)
			tt.edit(&cfg)
			d, err := New(cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, %v; want a ConfigError for %s", d, err, tt.field)
			}
			if !strings.Contains(err.Error(), "Config."+tt.field) {
				t.Errorf("error %q does not name Config.%s", err, tt.field)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestNewFillsInTheDefaults(t *testing.T) {
	t.Parallel()
	d, err := New(Config{
		URL: "https://example.com/hook", Secret: testSecret, Log: newMemLog(),
		CursorPath: filepath.Join(t.TempDir(), "c"), DeadLetterPath: filepath.Join(t.TempDir(), "d"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := d.cfg
	got := []any{c.Parallel, c.Window, c.MaxAttempts, c.BaseBackoff, c.MaxBackoff, c.Timeout, d.Cursor()}
	want := []any{8, 1024, 8, 500 * time.Millisecond, time.Minute, 10 * time.Second, uint64(1)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("defaults %v, want %v", got, want)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Run = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Run(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Shutdown = %v, want ErrClosed", err)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
}

func TestStartsFromAnExistingCursorFile(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{1}, 5)
	rc := newReceiver(t, nil)
	cfg := testConfig(t, rc.URL(), l)
	if err := os.WriteFile(cfg.CursorPath, []byte("3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, cfg, nil)
	rc.await(t, "evt_3..5", allDelivered(3, 5))
	_, _ = d.stop(context.Background())
	arrived, _, _ := rc.snapshot()
	for _, r := range arrived {
		if r.seq < 3 {
			t.Errorf("evt_%d sent, before the cursor 3", r.seq)
		}
	}
}

func TestRunTwiceFails(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{1}, 1)
	rc := newReceiver(t, nil)
	d := start(t, testConfig(t, rc.URL(), l), nil)
	rc.await(t, "evt_1", allDelivered(1, 1)) // the first Run is going
	if err := d.Run(context.Background()); err == nil {
		t.Error("a second Run while running = nil, want an error")
	}
}

func TestAClosedLogStopsRunWithAnError(t *testing.T) {
	t.Parallel()
	l := newMemLog()
	appendCalls(t, l, []int64{1}, 1)
	rc := newReceiver(t, nil)
	d, err := New(testConfig(t, rc.URL(), l))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(context.Background()) }()
	rc.await(t, "evt_1", allDelivered(1, 1))
	_ = l.Close()
	select {
	case err := <-runErr:
		if !errors.Is(err, eventlog.ErrClosed) {
			t.Errorf("Run = %v, want eventlog.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the log was closed")
	}
	if err := d.Shutdown(context.Background()); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Shutdown after Run returned = %v, want Run's error", err)
	}
}

func TestCursorFileIsReplacedAtomically(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "cursor")
	for _, n := range []uint64{1, 42, 18446744073709551615} {
		if err := writeCursor(path, n); err != nil {
			t.Fatal(err)
		}
		got, err := readCursor(path)
		if err != nil || got != n {
			t.Errorf("readCursor = %d, %v; want %d", got, err, n)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d files, want only the cursor (no temporary files left)", len(entries))
	}
	if err := writeCursor(filepath.Join(dir, "missing", "cursor"), 1); err == nil {
		t.Error("writeCursor into a missing directory = nil, want an error")
	}
}
