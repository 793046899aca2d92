package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/emitter/webhook"
	"github.com/callfsm/callfsm/fsm"
)

// buildCallfsm builds the callfsm binary into a temporary directory.
func buildCallfsm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callfsm")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// watchedOutput collects a process's output and wakes waiters on every
// write.
type watchedOutput struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newWatchedOutput() *watchedOutput { return &watchedOutput{changed: make(chan struct{})} }

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
	return w.b.Write(p)
}

func (w *watchedOutput) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.b.String() }

// await waits until re matches the output, and returns the submatches.
func (w *watchedOutput) await(t *testing.T, re *regexp.Regexp, exited <-chan struct{}) []string {
	t.Helper()
	deadline := time.After(30 * time.Second) // a bound on a hang: starting takes milliseconds
	for {
		w.mu.Lock()
		m := re.FindStringSubmatch(w.b.String())
		changed := w.changed
		w.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-exited:
			t.Fatalf("the process exited before printing %s:\n%s", re, w.String())
		case <-deadline:
			t.Fatalf("no %s after 30s:\n%s", re, w.String())
		}
	}
}

// proc is one run of the callfsm binary: callfsm serve.
type proc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	line   string // the "listening" log line
	stderr *watchedOutput
	exited chan struct{} // closed when the process has exited
	err    error         // what Wait returned, once exited is closed
}

var listeningLine = regexp.MustCompile(`(?m)^.*callfsm serve: listening.* addr=http://(\S+).*$`)

// startBinary runs bin with args and waits until it listens.
func startBinary(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: newWatchedOutput(), exited: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	m := p.stderr.await(t, listeningLine, p.exited)
	p.line, p.base = m[0], "http://"+m[1]
	return p
}

// wait waits for the process to exit and returns Wait's error.
func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatalf("the process has not exited after 30s:\n%s", p.stderr.String())
		return nil
	}
}

// hookReceiver is a webhook receiver that verifies every request and
// remembers, for each webhook-id, the first body received and the order
// of first arrivals. It can hang: while held, requests for events after
// holdAfter wait until release or until the sender goes away (and then
// count for nothing).
type hookReceiver struct {
	t         *testing.T
	secret    string
	srv       *httptest.Server
	holdAfter uint64
	held      chan struct{} // closed by release

	mu       sync.Mutex
	bodies   map[uint64][]byte // by seq, the first body received
	firsts   []uint64          // seqs in the order they first arrived
	requests int
	changed  chan struct{}
}

// newHookReceiver starts a receiver that holds the requests for events
// after holdAfter until release; 0 holds none.
func newHookReceiver(t *testing.T, secret string, holdAfter uint64) *hookReceiver {
	h := &hookReceiver{t: t, secret: secret, holdAfter: holdAfter, held: make(chan struct{}),
		bodies: make(map[uint64][]byte), changed: make(chan struct{})}
	if holdAfter == 0 {
		close(h.held)
	}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the sender died mid-request: it will send again
	}
	if err := webhook.Verify(h.secret, r.Header, body, time.Minute, time.Now()); err != nil {
		h.t.Errorf("webhook %s: %v", r.Header.Get(webhook.HeaderID), err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	seq, err := strconv.ParseUint(strings.TrimPrefix(r.Header.Get(webhook.HeaderID), "evt_"), 10, 64)
	if err != nil {
		h.t.Errorf("webhook-id %q, want evt_<seq>", r.Header.Get(webhook.HeaderID))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if h.holdAfter > 0 && seq > h.holdAfter {
		select {
		case <-h.held:
		case <-r.Context().Done():
			return
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if _, ok := h.bodies[seq]; !ok {
		h.bodies[seq] = body
		h.firsts = append(h.firsts, seq)
	}
	close(h.changed)
	h.changed = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) release() { close(h.held) }

// awaitAll waits until every seq in [1, n] has arrived.
func (h *hookReceiver) awaitAll(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		h.mu.Lock()
		missing := uint64(0)
		for s := uint64(1); s <= n; s++ {
			if _, ok := h.bodies[s]; !ok {
				missing = s
				break
			}
		}
		changed := h.changed
		h.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the webhook never received evt_%d (of %d events)", missing, n)
		}
	}
}

// loggedEvent is a line of the event log, with what the test checks.
type loggedEvent struct {
	Event       string `json:"event"`
	CallID      int64  `json:"call_id"`
	Participant string `json:"participant"`
	line        []byte
}

func readEventLog(t *testing.T, path string) []loggedEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []loggedEvent
	for line := range bytes.Lines(data) {
		require.True(t, bytes.HasSuffix(line, []byte("\n")), "a torn line after a restart: %q", line)
		var ev loggedEvent
		require.NoError(t, json.Unmarshal(line, &ev), "line %d", len(out)+1)
		ev.line = bytes.TrimSuffix(line, []byte("\n"))
		out = append(out, ev)
	}
	return out
}

const eventPrefix = "popin_outgoing_call_"

// step is one request of a call's script: the trigger ("" creates the
// call), its body, and the state a 2xx leads to.
type step struct {
	trigger, participant, state string
}

// scripts are the ways the traffic drives a call. The last steps of a
// script may be cut, to leave calls live.
var scripts = [][]step{
	{{"ring", "", "ringing"}, {"accept", "", "accepted"}, {"start", "", "started"}, {"end", "", "successful"}},
	{{"ring", "", "ringing"}, {"start", "", "started"}, {"end", "", "successful"}},
	{{"ring", "", "ringing"}, {"accept", "", "accepted"}, {"network_failure", "user", "network_failure"}},
	{{"ring", "", "ringing"}, {"accept", "", "accepted"}, {"start", "", "started"}, {"network_failure", "agent", "network_failure"}},
	{{"ring", "", "ringing"}, {"decline", "", "declined"}},
	{{"busy", "", "busy"}},
}

// driven is what the traffic did to one call.
type driven struct {
	id       int64
	acked    []string // events of the transitions answered 2xx, in order
	inFlight string   // the event of a request the server died under, if any
	nf       string   // the participant sent with network_failure
	rejected int      // requests answered 409, as the script meant
}

// trafficClient sends the traffic's requests.
type trafficClient struct {
	c    *http.Client
	base string
}

// post sends one request; err is non-nil when no status came back, and
// the body is nil when it is not JSON.
func (tc trafficClient) post(path, body string) (int, map[string]any, error) {
	resp, err := tc.c.Post(tc.base+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// traffic is what the clients did, and a signal once enough transitions
// were acknowledged.
type traffic struct {
	tc        trafficClient
	seed      uint64
	acked     atomic.Int64
	threshold int64
	reached   chan struct{} // closed when acked reaches threshold

	mu    sync.Mutex
	calls []*driven
}

func (tr *traffic) ack(d *driven, event string) {
	d.acked = append(d.acked, event)
	if tr.acked.Add(1) == tr.threshold {
		close(tr.reached)
	}
}

// drive runs calls as client w until the server stops answering. Each
// call follows a random script, cut short now and then to stay live, and
// now and then tries an illegal trigger that must be refused.
func (tr *traffic) drive(t *testing.T, w int) {
	rng := rand.New(rand.NewPCG(tr.seed, uint64(w)))
	tc := tr.tc
	for n := int64(1); ; n++ {
		d := &driven{id: int64(w)*1_000_000 + n}
		tr.mu.Lock()
		tr.calls = append(tr.calls, d)
		tr.mu.Unlock()
		script := scripts[rng.IntN(len(scripts))]
		if rng.IntN(4) == 0 {
			script = script[:rng.IntN(len(script))] // left live
		}
		body := fmt.Sprintf(`{"call_id":%d,"user_id":58559,"agent":{"name":"Sasha","email":"sasha@example.com"}}`, d.id)
		all := append([]step{{"", "", "initiated"}}, script...)
		for i, s := range all {
			if i == 2 && rng.IntN(8) == 0 { // an illegal trigger, in the middle of the call
				code, resp, err := tc.post(fmt.Sprintf("/v1/calls/%d/ring", d.id), "")
				if err != nil {
					return
				}
				if code != http.StatusConflict {
					t.Errorf("call %d: ring again: %d %v, want 409", d.id, code, resp)
					return
				}
				d.rejected++
			}
			path, reqBody := "/v1/calls", body
			if s.trigger != "" {
				path, reqBody = fmt.Sprintf("/v1/calls/%d/%s", d.id, s.trigger), ""
				if s.participant != "" {
					reqBody = `{"participant":"` + s.participant + `"}`
					d.nf = s.participant
				}
			}
			code, resp, err := tc.post(path, reqBody)
			if err != nil { // killed: the transition may or may not be in the log
				d.inFlight = eventPrefix + s.state
				return
			}
			// A 2xx is a committed transition, even if its body was cut.
			if code/100 != 2 || (resp != nil && resp["state"] != s.state) {
				t.Errorf("call %d: %s: %d %v, want 2xx and state %s", d.id, path, code, resp, s.state)
				return
			}
			tr.ack(d, eventPrefix+s.state)
		}
	}
}

// The real binary, killed with SIGKILL in the middle of traffic from
// several clients, then started again on the same data directory: every
// transition that was answered 2xx is in the log (and nothing else but the
// requests the kill cut), the restored calls are where the log left them
// and take their next inputs, every event of the log reaches the webhook
// signed, and `callfsm check --strict` passes the log.
//
// Timeouts are switched off so that where a call is does not depend on how
// long the test takes; resuming timers after a restart is
// TestServeRecoversAfterRestart's business, on a virtual clock.
func TestServeBinarySIGKILLMidTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const workers, killAfter = 8, 400
	bin := buildCallfsm(t)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	hook := newHookReceiver(t, secret, 100) // stuck at the crash: the webhook cursor lags the log
	dir := t.TempDir()
	logPath := filepath.Join(dir, "events.jsonl")
	noTimeouts := []string{"--timeout", "initiated=0", "--timeout", "ringing=0", "--timeout", "accepted=0"}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir,
		"--webhook", hook.srv.URL + "/hooks", "--webhook-secret", secret, "--fsync", "always"}, noTimeouts...)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	// First run: traffic, and a SIGKILL once killAfter transitions are acknowledged.
	p1 := startBinary(t, bin, args...)
	transport := &http.Transport{MaxIdleConnsPerHost: workers}
	defer transport.CloseIdleConnections()
	tc := trafficClient{c: &http.Client{Transport: transport, Timeout: 30 * time.Second}, base: p1.base}
	tr := &traffic{tc: tc, seed: seed, threshold: killAfter, reached: make(chan struct{})}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { tr.drive(t, w+1) })
	}
	select {
	case <-tr.reached:
		require.NoError(t, p1.cmd.Process.Signal(syscall.SIGKILL))
	case <-p1.exited:
		t.Errorf("the server exited on its own: %v\n%s", p1.err, p1.stderr.String())
	case <-time.After(60 * time.Second): // a bound on a hang
		t.Errorf("%d transitions acknowledged after 60s, want %d", tr.acked.Load(), killAfter)
	}
	_ = p1.cmd.Process.Kill() // the workers stop once the server is gone
	wg.Wait()
	hook.release()
	if t.Failed() {
		t.FailNow()
	}
	var ee *exec.ExitError
	require.ErrorAs(t, p1.wait(t), &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "killed, not exited")

	// The log holds every acknowledged transition, and the cut ones at most.
	logged := readEventLog(t, logPath)
	byCall := make(map[int64][]loggedEvent)
	for _, ev := range logged {
		byCall[ev.CallID] = append(byCall[ev.CallID], ev)
	}
	driven := tr.calls
	inFlight, rejected := 0, 0
	for _, d := range driven {
		if d.inFlight != "" {
			inFlight++
		}
		rejected += d.rejected
	}
	t.Logf("%d calls, %d transitions acknowledged, %d cut by the kill, %d illegal triggers refused; %d events in the log",
		len(driven), tr.acked.Load(), inFlight, rejected, len(logged))
	require.GreaterOrEqual(t, tr.acked.Load(), int64(killAfter))
	live := 0
	made := make(map[int64]bool)
	for _, d := range driven {
		var got []string
		for _, ev := range byCall[d.id] {
			got = append(got, ev.Event)
			if ev.Event == eventPrefix+"network_failure" {
				assert.Equal(t, d.nf, ev.Participant, "call %d: the network_failure participant", d.id)
			}
		}
		if d.inFlight != "" && len(got) == len(d.acked)+1 {
			assert.Equal(t, append(slices.Clone(d.acked), d.inFlight), got, "call %d: acknowledged and then cut by the kill", d.id)
		} else {
			assert.Equal(t, d.acked, got, "call %d: the log holds what was acknowledged", d.id)
		}
		if len(got) > 0 && !terminal(got[len(got)-1]) {
			live++
		}
		made[d.id] = true
	}
	for id := range byCall {
		assert.True(t, made[id], "call %d is in the log; the traffic never made it", id)
	}

	t.Logf("%d calls live at the kill", live)

	// Second run, on the same data directory.
	p2 := startBinary(t, bin, args...)
	assert.Contains(t, p2.line, fmt.Sprintf("calls_restored=%d ", live))
	tc.base = p2.base
	ended := 0
	for _, d := range driven {
		want := byCall[d.id]
		if len(want) == 0 {
			continue // the create was cut before it was logged
		}
		last := strings.TrimPrefix(want[len(want)-1].Event, eventPrefix)
		code, body, err := tc.get(fmt.Sprintf("/v1/calls/%d", d.id))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "call %d: %v", d.id, body)
		assert.Equal(t, last, body["state"], "call %d", d.id)
		assert.Equal(t, !terminal(last), body["live"], "call %d", d.id)
		assert.Len(t, body["events"], len(want), "call %d", d.id)
		if terminal(last) {
			continue
		}
		// A restored call takes the next input of its state, and ends.
		next := map[string]string{"initiated": "cancel", "ringing": "decline", "accepted": "network_failure", "started": "end"}[last]
		reqBody := ""
		if next == "network_failure" {
			reqBody = `{"participant":"user"}`
		}
		code, body, err = tc.post(fmt.Sprintf("/v1/calls/%d/%s", d.id, next), reqBody)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code, "call %d: %s from %s after the restart: %v", d.id, next, last, body)
		ended++
	}
	assert.Equal(t, live, ended)

	// Every event of the log reaches the webhook, signed, in order per call.
	final := readEventLog(t, logPath)
	assert.Len(t, final, len(logged)+live, "one more event per restored call, none twice")
	hook.awaitAll(t, uint64(len(final)))
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p2.wait(t), p2.stderr.String())
	hook.mu.Lock()
	for seq, body := range hook.bodies {
		require.LessOrEqual(t, seq, uint64(len(final)), "a webhook for an event not in the log")
		assert.Equal(t, string(final[seq-1].line), string(body), "evt_%d: the body is the logged seed payload", seq)
	}
	lastSeq := make(map[int64]uint64)
	for _, seq := range hook.firsts {
		c := final[seq-1].CallID
		assert.Greater(t, seq, lastSeq[c], "call %d: evt_%d first arrived after evt_%d", c, seq, lastSeq[c])
		lastSeq[c] = seq
	}
	t.Logf("%d webhook requests for %d events", hook.requests, len(final))
	hook.mu.Unlock()

	// callfsm check passes the log: no error, and no warning since every call ended.
	out, err := exec.Command(bin, append([]string{"check", "--strict"}, append(noTimeouts, logPath)...)...).CombinedOutput()
	assert.NoError(t, err, "callfsm check:\n%s", out)
}

func (tc trafficClient) get(path string) (int, map[string]any, error) {
	resp, err := tc.c.Get(tc.base + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return resp.StatusCode, nil, errors.Join(errors.New("decoding the body"), err)
	}
	return resp.StatusCode, out, nil
}

// terminal reports whether a state (or its event) ends a call.
func terminal(state string) bool {
	return fsm.Outgoing().Terminal(fsm.State(strings.TrimPrefix(state, eventPrefix)))
}
