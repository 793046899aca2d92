package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check"
	"github.com/callfsm/callfsm/emitter/webhook"
	"github.com/callfsm/callfsm/timeout"
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// server is one in-process run of callfsm serve.
type server struct {
	base   string
	stderr *syncBuffer
	stop   context.CancelFunc
	done   chan error
}

func startServe(t *testing.T, clock timeout.Clock, args ...string) *server {
	t.Helper()
	return startServeCmd(t, &serveCmd{clock: clock}, args...)
}

// startServeCmd runs cmd, whose test hooks are set, as startServe does.
func startServeCmd(t *testing.T, cmd *serveCmd, args ...string) *server {
	t.Helper()
	ready := make(chan string, 1)
	stderr := &syncBuffer{}
	cmd.stdout, cmd.stderr, cmd.ready = io.Discard, stderr, ready
	c := cmd.command()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stderr: stderr, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.ParseAndRun(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...)) }()
	select {
	case addr := <-ready:
		s.base = "http://" + addr
	case err := <-s.done:
		t.Fatalf("serve did not start: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

func (s *server) shutdown(t *testing.T) {
	t.Helper()
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	require.NoError(t, <-s.done, s.stderr.String())
}

func (s *server) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

const createBody = `{"call_id":28844,"user_id":58559,"schedule_id":null,
 "agent":{"name":"Sasha","email":"menonaiswarya0@gmail.com"},
 "user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},
 "meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}}}`

// A call rings, the server stops, and comes back 20 s later: the call is
// still ringing and times out 10 s after the restart with its original
// deadline; the log checks clean; every event reached the webhook signed.
func TestServeRecoversAfterRestart(t *testing.T) {
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	missedDelivered := make(chan struct{})
	var once sync.Once
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("bad signature: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev struct{ Event string }
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got = append(got, r.Header.Get("webhook-id")+" "+ev.Event)
		mu.Unlock()
		if ev.Event == "popin_outgoing_call_missed" {
			once.Do(func() { close(missedDelivered) })
		}
	}))
	defer receiver.Close()

	dir := t.TempDir()
	t0 := time.Unix(1771832273, 0)
	args := []string{"--data-dir", dir, "--webhook", receiver.URL, "--webhook-secret", secret}

	clock := timeout.NewVirtual(t0)
	s := startServe(t, clock, args...)
	code, body := s.do(t, "POST", "/v1/calls", createBody)
	require.Equal(t, http.StatusCreated, code, body)
	clock.Advance(2 * time.Second)
	code, body = s.do(t, "POST", "/v1/calls/28844/ring", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "ringing", body["state"])
	code, body = s.do(t, "POST", "/v1/calls/28844/end", "")
	assert.Equal(t, http.StatusConflict, code, body)
	s.shutdown(t)

	// A crash mid-append leaves a torn line: it must not stop the restart.
	f, err := os.OpenFile(filepath.Join(dir, "events.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"event":"popin_outgoing_call_acc`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	clock2 := timeout.NewVirtual(t0.Add(22 * time.Second)) // rang for 20 s before
	s2 := startServe(t, clock2, args...)
	assert.Contains(t, s2.stderr.String(), "calls_restored=1")
	assert.Contains(t, s2.stderr.String(), "truncating a torn last line")
	code, body = s2.do(t, "GET", "/v1/calls/28844", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "ringing", body["state"])

	clock2.Advance(10*time.Second - time.Millisecond)
	code, body = s2.do(t, "GET", "/v1/calls/28844", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ringing", body["state"])
	clock2.Advance(time.Millisecond)
	code, body = s2.do(t, "GET", "/v1/calls/28844", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "missed", body["state"])
	events := body["events"].([]any)
	require.Len(t, events, 3)
	assert.EqualValues(t, t0.Add(32*time.Second).Unix(), events[2].(map[string]any)["timestamp"], "the deadline is the timestamp")
	select {
	case <-missedDelivered:
	case <-time.After(30 * time.Second): // a bound on a hang, not a wait for a timer
		t.Fatal("the missed event never reached the webhook")
	}
	s2.shutdown(t)

	// The log is what check reads, and it checks clean.
	logFile, err := os.Open(filepath.Join(dir, "events.jsonl"))
	require.NoError(t, err)
	defer logFile.Close()
	chk, err := check.New(check.Config{})
	require.NoError(t, err)
	rep, err := chk.Check(context.Background(), check.Input{Name: "events.jsonl", R: logFile})
	require.NoError(t, err)
	assert.Equal(t, 3, rep.Events)
	assert.Empty(t, rep.Findings)

	// Every event reached the webhook at least once, in order, with its
	// stable id (a restart may redeliver, never skip).
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	var order []string
	for _, g := range got {
		if !seen[g] {
			seen[g] = true
			order = append(order, g)
		}
	}
	assert.Equal(t, []string{
		"evt_1 popin_outgoing_call_initiated",
		"evt_2 popin_outgoing_call_ringing",
		"evt_3 popin_outgoing_call_missed",
	}, order)
}

func TestServeUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--webhook", "http://x"}, "--webhook needs --webhook-secret"},
		{[]string{"serve", "--webhook", "ftp://x", "--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "want an http or https URL"},
		{[]string{"serve", "--fsync", "sometimes"}, "unknown sync policy"},
		{[]string{"serve", "--timeout", "started=1m"}, "has a timeout but no"},
		{[]string{"serve", "extra"}, "serve takes no arguments"},
		{[]string{"serve", "--grace", "-1s"}, "--grace -1s: must not be negative"},
		{[]string{"serve", "--shutdown-timeout", "0s"}, "--shutdown-timeout 0s: must be positive"},
	} {
		code, _, errOut := runCLI(t, tt.args...)
		assert.Equal(t, exitUsage, code, tt.args)
		assert.Contains(t, errOut, tt.want, tt.args)
	}
}

// The real binary, as an operator runs it: it starts on its defaults in a
// data directory, answers, and drains and exits 0 on SIGTERM.
func TestServeBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "callfsm")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	dir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CALLFSM_TOKEN=s3cret")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()

	addr := regexp.MustCompile(`addr=http://(\S+)`)
	sc := bufio.NewScanner(stderr)
	var base string
	for sc.Scan() {
		if m := addr.FindStringSubmatch(sc.Text()); m != nil {
			base = "http://" + m[1]
			break
		}
	}
	require.NotEmpty(t, base, "no listening line")
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	req, _ := http.NewRequest("POST", base+"/v1/calls", strings.NewReader(createBody))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "CALLFSM_TOKEN is read from the environment")
	req, _ = http.NewRequest("POST", base+"/v1/calls", strings.NewReader(createBody))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "exit status after SIGTERM")
	data, err := os.ReadFile(filepath.Join(dir, "callfsm-data", "events.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 1, bytes.Count(data, []byte("\n")), "the default data dir holds the log")

}

// Every CALLFSM_* variable is taken whole (a token or a path may hold a
// comma); only CALLFSM_WEBHOOK lists several values, separated by spaces.
func TestServeEnvironment(t *testing.T) {
	s := &serveCmd{stdout: io.Discard, stderr: io.Discard}
	c := s.command()
	t.Setenv("CALLFSM_TOKEN", "s3cr3t,with,commas")
	t.Setenv("CALLFSM_DATA_DIR", "/var/lib/callfsm,prod")
	t.Setenv("CALLFSM_WEBHOOK", "https://a.example/hook?tags=x,y  https://b.example/hook")
	require.NoError(t, c.Parse(nil))
	assert.Equal(t, "s3cr3t,with,commas", s.token)
	assert.Equal(t, "/var/lib/callfsm,prod", s.dataDir)
	assert.Equal(t, stringsFlag{"https://a.example/hook?tags=x,y", "https://b.example/hook"}, s.webhooks)
}

func TestRedactWebhookURL(t *testing.T) {
	assert.Equal(t, "https://seller.example/hooks", redact("https://user:pw@seller.example/hooks?token=abc#x"))
	assert.Equal(t, "(unparsable URL)", redact("http://[::1"))
}
