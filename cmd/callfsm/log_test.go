package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check/checktest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
)

// jsLog is an event log on a JetStream stream of an in-process server.
type jsLog struct {
	srv *natsserver.Server
	nc  *nats.Conn
	log *jetstream.Log
}

// newJSLog starts a server and opens the Log of cfg (Conn is set) on it,
// all closed when the test ends.
func newJSLog(t *testing.T, cfg jetstream.Config) *jsLog {
	t.Helper()
	s := startNATS(t)
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	cfg.Conn = nc
	l, err := jetstream.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return &jsLog{srv: s, nc: nc, log: l}
}

// add appends the events of lines, JSON Lines without their '\n'.
func (j *jsLog) add(t *testing.T, lines []string) {
	t.Helper()
	for _, l := range lines {
		ev, err := event.Decode([]byte(l))
		require.NoError(t, err)
		_, err = j.log.Append(context.Background(), ev)
		require.NoError(t, err)
	}
}

// streamConfig returns the stream's configuration as the server holds it.
func (j *jsLog) streamConfig(t *testing.T, name string) natsjs.StreamConfig {
	t.Helper()
	js, err := natsjs.New(j.nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), name)
	require.NoError(t, err)
	return s.CachedInfo().Config
}

// jsonl joins lines into JSON Lines.
func jsonl(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// runLog runs the log subcommand in-process with its hooks; cmd.stdout,
// when set, receives the export instead of the returned string.
func runLog(t *testing.T, ctx context.Context, cmd *logCmd, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if cmd.stdout == nil {
		cmd.stdout = &out
	}
	cmd.stderr = &errOut
	err := cmd.command().ParseAndRun(ctx, args)
	switch {
	case err == nil:
		return exitOK, out.String(), errOut.String()
	case errors.As(err, new(usageError)):
		return exitUsage, out.String(), errOut.String() + "callfsm: " + err.Error() + "\n"
	default:
		return exitFail, out.String(), errOut.String() + "callfsm: " + err.Error() + "\n"
	}
}

// The export is the log's bytes, in order, and callfsm check finds it
// legal.
func TestLogExportsTheStream(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 20, Concurrent: 5, Seed: 7})
	j := newJSLog(t, jetstream.Config{})
	j.add(t, lines)
	n := strconv.Itoa(len(lines))

	for _, args := range [][]string{{}, {"-o", "-"}} {
		code, out, errOut := runCLI(t, append([]string{"log", "--nats", j.srv.ClientURL()}, args...)...)
		require.Equal(t, exitOK, code, errOut)
		assert.Equal(t, jsonl(lines), out)
		assert.Equal(t, "callfsm log: exported "+n+" events (seq 1.."+n+") from stream CALLFSM to standard output\n", errOut)

		code, report, _ := runCheck(t, &checkCmd{}, strings.NewReader(out))
		assert.Equal(t, exitOK, code, report)
		assert.Contains(t, report, "checked 1 file, "+n+" lines: "+n+" events in 20 calls\n")
		assert.Contains(t, report, "errors: 0\n")
	}
}

// -o replaces the file whole, 0600, leaving no temporary file behind.
func TestLogOutputFile(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 5, Seed: 8})
	j := newJSLog(t, jetstream.Config{})
	j.add(t, lines)
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.jsonl")
	require.NoError(t, os.WriteFile(path, []byte("an older export\n"), 0o644))

	code, out, errOut := runCLI(t, "log", "--nats", j.srv.ClientURL(), "-o", path)
	require.Equal(t, exitOK, code, errOut)
	assert.Empty(t, out)
	assert.Contains(t, errOut, " from stream CALLFSM to "+path+"\n")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, jsonl(lines), string(got))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.Equal(t, []string{"cluster.jsonl"}, dirNames(t, dir))

	code, report, errOut := runCLI(t, "check", path)
	assert.Equal(t, exitOK, code, report+errOut)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestLogFrom(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 4, Seed: 9})
	j := newJSLog(t, jetstream.Config{})
	j.add(t, lines)
	n := len(lines)
	tests := []struct {
		from   int
		want   []string
		stderr string
	}{
		{1, lines, "exported " + strconv.Itoa(n) + " events (seq 1.." + strconv.Itoa(n) + ")"},
		{5, lines[4:], "exported " + strconv.Itoa(n-4) + " events (seq 5.." + strconv.Itoa(n) + ")"},
		{n, lines[n-1:], "exported 1 event (seq " + strconv.Itoa(n) + ".." + strconv.Itoa(n) + ")"},
		{n + 1, nil, "exported 0 events from stream CALLFSM (last seq " + strconv.Itoa(n) + ")"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.from), func(t *testing.T) {
			code, out, errOut := runCLI(t, "log", "--nats", j.srv.ClientURL(), "--from", strconv.Itoa(tt.from))
			require.Equal(t, exitOK, code, errOut)
			assert.Equal(t, jsonl(tt.want), out)
			assert.Contains(t, errOut, tt.stderr)
		})
	}
}

// appendOnWrite appends more events to the log the first time the export
// writes, as other nodes would.
type appendOnWrite struct {
	t     *testing.T
	j     *jsLog
	more  []string
	buf   bytes.Buffer
	fired bool
}

func (w *appendOnWrite) Write(p []byte) (int, error) {
	if !w.fired {
		w.fired = true
		w.j.add(w.t, w.more)
	}
	return w.buf.Write(p)
}

// The export stops at the stream's end when it began, though nodes go on
// appending; and opening the Log leaves the stream's configuration as it
// was, here a stream of another name, subject prefix and partition count.
func TestLogSnapshot(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 300, Seed: 10})
	require.Greater(t, len(jsonl(lines)), 80<<10, "more than the 64 KiB output buffer, so that the export writes before it has read everything")
	more := engineLog(t, checktest.Config{Calls: 5, Seed: 11, FirstID: 10_000})
	j := newJSLog(t, jetstream.Config{Stream: "POPIN", Subjects: "popin.calls", Partitions: 4})
	j.add(t, lines)
	before := j.streamConfig(t, "POPIN")

	w := &appendOnWrite{t: t, j: j, more: more}
	code, _, errOut := runLog(t, context.Background(), &logCmd{stdout: w, batch: 10}, "--nats", j.srv.ClientURL(), "--stream", "POPIN")
	require.Equal(t, exitOK, code, errOut)
	require.True(t, w.fired)
	assert.Equal(t, jsonl(lines), w.buf.String())
	assert.Equal(t, uint64(len(lines)+len(more)), j.log.LastSeq(), "the appends were stored while the export ran")
	assert.Equal(t, before, j.streamConfig(t, "POPIN"), "the export changes nothing of the stream")
}

// The export never creates a stream, and says which one it did not find
// where.
func TestLogMissingStream(t *testing.T) {
	t.Parallel()
	j := newJSLog(t, jetstream.Config{})
	u, err := url.Parse(j.srv.ClientURL())
	require.NoError(t, err)
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "log", "--nats", "nats://alice:s3cret@"+u.Host, "--stream", "NOPE", "-o", filepath.Join(dir, "out.jsonl"))
	assert.Equal(t, exitFail, code)
	assert.Empty(t, out)
	assert.Equal(t, "callfsm: stream NOPE not found on nats://"+u.Host+"\n", errOut)
	assert.Empty(t, dirNames(t, dir), "no output file, no temporary file")

	js, err := natsjs.New(j.nc)
	require.NoError(t, err)
	_, err = js.Stream(context.Background(), "NOPE")
	assert.ErrorIs(t, err, natsjs.ErrStreamNotFound, "the export did not create the stream")
}

// A stream that is not a callfsm log is refused, and left as it is.
func TestLogForeignStream(t *testing.T) {
	t.Parallel()
	j := newJSLog(t, jetstream.Config{})
	js, err := natsjs.New(j.nc)
	require.NoError(t, err)
	_, err = js.CreateStream(context.Background(), natsjs.StreamConfig{Name: "ORDERS", Subjects: []string{"orders", "invoices.*"}})
	require.NoError(t, err)
	before := j.streamConfig(t, "ORDERS")

	code, _, errOut := runCLI(t, "log", "--nats", j.srv.ClientURL(), "--stream", "ORDERS")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, `stream ORDERS on `+j.srv.ClientURL()+` holds subjects ["orders" "invoices.*"], not one PREFIX.>: not a callfsm event log`)
	assert.Equal(t, before, j.streamConfig(t, "ORDERS"))

	_, err = js.CreateStream(context.Background(), natsjs.StreamConfig{Name: "AUDIT", Subjects: []string{"audit.>"}})
	require.NoError(t, err)
	before = j.streamConfig(t, "AUDIT")
	code, _, errOut = runCLI(t, "log", "--nats", j.srv.ClientURL(), "--stream", "AUDIT")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, `stream AUDIT on `+j.srv.ClientURL()+`: eventlog/jetstream: stream AUDIT has no partition count (metadata callfsm_partitions): not a callfsm event log`)
	assert.Equal(t, before, j.streamConfig(t, "AUDIT"))
}

// No server: a clear error at once, naming the URL without its password.
func TestLogUnreachable(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	start := time.Now()
	code, out, errOut := runCLI(t, "log", "--nats", "nats://alice:s3cret@"+addr)
	assert.Less(t, time.Since(start), defaultNATSTimeout, "a refused connection does not wait out the timeout")
	assert.Equal(t, exitFail, code)
	assert.Empty(t, out)
	assert.Equal(t, "callfsm: connecting to NATS at nats://"+addr+": nats: no servers available for connection\n", errOut)
}

func TestLogUsageErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "user.creds")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no --nats", nil, "callfsm: --nats is required (or CALLFSM_NATS)"},
		{"from 0", []string{"--nats", "nats://h", "--from", "0"}, "callfsm: --from 0: sequence numbers start at 1"},
		{"negative from", []string{"--nats", "nats://h", "--from", "-1"}, `invalid value "-1" for flag -from`},
		{"argument", []string{"--nats", "nats://h", "x.jsonl"}, `callfsm: log takes no arguments, got ["x.jsonl"]`},
		{"missing creds", []string{"--nats", "nats://h", "--nats-creds", missing}, "callfsm: --nats-creds " + missing + ": no such file"},
		{"bad stream", []string{"--nats", "nats://h", "--stream", "calls.*"}, `callfsm: --stream "calls.*": want a stream name`},
		{"bad URL", []string{"--nats", "https://h"}, `callfsm: --nats https://h: unknown scheme "https"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"log"}, tt.args...)...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.want)
		})
	}
}

func TestLogEnvironment(t *testing.T) {
	lines := engineLog(t, checktest.Config{Calls: 2, Seed: 12})
	j := newJSLog(t, jetstream.Config{Stream: "ENV", Subjects: "env.calls"})
	j.add(t, lines)
	t.Setenv("CALLFSM_NATS", j.srv.ClientURL())
	t.Setenv("CALLFSM_STREAM", "ENV")
	t.Setenv("CALLFSM_FROM", "2")
	code, out, errOut := runCLI(t, "log")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, jsonl(lines[1:]), out)
}

// Progress shows on a terminal and is erased before the summary; it never
// shows in a pipe.
func TestLogProgress(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 10, Seed: 13})
	j := newJSLog(t, jetstream.Config{})
	j.add(t, lines)
	clock := time.Unix(0, 0)
	tick := func() time.Time { clock = clock.Add(time.Second); return clock }

	tty := &logCmd{isTerminal: func(io.Writer) bool { return true }, now: tick, batch: 10}
	code, out, errOut := runLog(t, context.Background(), tty, "--nats", j.srv.ClientURL())
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, jsonl(lines), out)
	assert.Regexp(t, `^\r\x1b\[Kexporting: +\d+% 10/\d+ events`, errOut)
	assert.Regexp(t, `\r\x1b\[Kcallfsm log: exported \d+ events \(seq 1\.\.\d+\) from stream CALLFSM to standard output\n$`, errOut)

	pipe := &logCmd{isTerminal: func(io.Writer) bool { return false }, now: tick, batch: 10}
	code, _, errOut = runLog(t, context.Background(), pipe, "--nats", j.srv.ClientURL())
	require.Equal(t, exitOK, code, errOut)
	assert.NotContains(t, errOut, "exporting")
}

// An interrupt stops the export and leaves no file, whole or partial.
func TestLogInterrupted(t *testing.T) {
	t.Parallel()
	lines := engineLog(t, checktest.Config{Calls: 10, Seed: 14})
	j := newJSLog(t, jetstream.Config{})
	j.add(t, lines)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	// The clock is read at the start and after each batch: the first
	// batch's reading stands for a SIGINT while the export runs.
	now := func() time.Time {
		if calls++; calls == 2 {
			cancel()
		}
		return time.Unix(int64(calls), 0)
	}
	cmd := &logCmd{isTerminal: func(io.Writer) bool { return true }, now: now, batch: 10}
	code, _, errOut := runLog(t, ctx, cmd, "--nats", j.srv.ClientURL(), "-o", filepath.Join(dir, "out.jsonl"))
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "callfsm: log export interrupted: ")
	assert.Contains(t, errOut, "context canceled")
	assert.Empty(t, dirNames(t, dir), "no output file, no temporary file")
}
