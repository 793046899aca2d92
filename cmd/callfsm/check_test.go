package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check"
	"github.com/callfsm/callfsm/call/check/checktest"
	"github.com/callfsm/callfsm/call/event"
)

// engineLog is a legal log written by the engine, as lines without their
// '\n'.
func engineLog(t *testing.T, cfg checktest.Config) []string {
	t.Helper()
	var b bytes.Buffer
	_, err := checktest.Write(&b, cfg)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

func writeFile(t *testing.T, path string, lines []string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

func writeGzip(t *testing.T, path string, data []byte) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// brokenLogs writes a.log and b.log.gz in dir: one engine log split in two
// (calls span both), with a line cut short, a redelivered event, a
// dropped event and a changed session_id.
func brokenLogs(t *testing.T, dir string) {
	t.Helper()
	ls := engineLog(t, checktest.Config{Calls: 12, Concurrent: 6, Seed: 42})
	ls[3] = ls[3][:40]                                                       // malformed
	ls = append(ls[:8], append([]string{ls[6]}, ls[8:]...)...)               // duplicate
	ls = dropRinging(t, ls, 30)                                              // an illegal transition: initiated to accepted
	ls[35] = strings.Replace(ls[35], `"session_id":"`, `"session_id":"x`, 1) // identity-mismatch
	half := len(ls) / 2
	writeFile(t, filepath.Join(dir, "a.log"), ls[:half])
	writeGzip(t, filepath.Join(dir, "b.log.gz"), []byte(strings.Join(ls[half:], "\r\n")))
}

// dropRinging drops the first ringing event from line from on whose call
// is then accepted.
func dropRinging(t *testing.T, ls []string, from int) []string {
	t.Helper()
	for i := from; i < len(ls); i++ {
		ev, err := event.Decode([]byte(ls[i]))
		require.NoError(t, err)
		if ev.Event != "popin_outgoing_call_ringing" {
			continue
		}
		for _, l := range ls[i+1:] {
			later, err := event.Decode([]byte(l))
			require.NoError(t, err)
			if later.CallID == ev.CallID && later.Event == "popin_outgoing_call_accepted" {
				return append(ls[:i:i], ls[i+1:]...)
			}
		}
	}
	t.Fatal("no ringing event to drop")
	return nil
}

// The text and JSON outputs of a check over two files, one gzipped, with
// every kind of damage brokenLogs does.
func TestCheckGolden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	brokenLogs(t, dir)
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log.gz")
	rel := func(s string) string { return strings.ReplaceAll(s, dir+string(filepath.Separator), "") }

	code, out, errOut := runCLI(t, "check", a, b)
	assert.Equal(t, exitFail, code)
	assert.Regexp(t, `^callfsm: check failed: \d+ errors?, \d+ warnings?\n$`, errOut)
	golden(t, "check/text.golden", rel(out))

	code, out, _ = runCLI(t, "check", "--format", "json", a, b)
	assert.Equal(t, exitFail, code)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "one JSON document")
	assert.Equal(t, []string{a, b}, rep.Files)
	require.NotEmpty(t, rep.Findings)
	assert.Equal(t, rep.Errors+rep.Warnings, len(rep.Findings))
	golden(t, "check/json.golden", rel(out))
}

func TestCheckExitStatus(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.log")
	writeFile(t, clean, engineLog(t, checktest.Config{Calls: 30, Seed: 1}))
	open := filepath.Join(dir, "open.log")
	writeFile(t, open, engineLog(t, checktest.Config{Calls: 30, Seed: 1, StopEarly: true}))
	broken := filepath.Join(dir, "broken.log")
	writeFile(t, broken, []string{"{"})
	notGzip := filepath.Join(dir, "plain.gz")
	writeFile(t, notGzip, engineLog(t, checktest.Config{Calls: 3, Seed: 1}))
	truncated := filepath.Join(dir, "truncated.log.gz")
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(bytes.Repeat([]byte("{}\n"), 100_000))
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(truncated, b.Bytes()[:b.Len()/2], 0o644))

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"clean", []string{clean}, exitOK, ""},
		{"warnings only", []string{open}, exitOK, ""},
		{"warnings with --strict", []string{"--strict", open}, exitFail, "check failed: 0 errors, "},
		{"errors", []string{broken}, exitFail, "check failed: 1 error, 0 warnings"},
		{"missing file", []string{clean, filepath.Join(dir, "nope.log")}, exitUsage, "nope.log: no such file or directory"},
		{"not gzip", []string{notGzip}, exitUsage, "plain.gz: not a readable gzip file: gzip: invalid header"},
		{"truncated gzip", []string{truncated}, exitUsage, "read " + truncated + ": unexpected EOF"},
		{"bad format", []string{"--format", "xml", clean}, exitUsage, `--format "xml": want text or json`},
		{"bad max-findings", []string{"--max-findings", "-1", clean}, exitUsage, "--max-findings -1"},
		{"bad timeout", []string{"--timeout", "started=5s", clean}, exitUsage, `state "started" has a timeout but no "timeout" transition`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, append([]string{"check"}, tt.args...)...)
			assert.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", out, errOut)
			if tt.stderr == "" {
				assert.Empty(t, errOut)
			} else {
				assert.Contains(t, errOut, tt.stderr)
			}
		})
	}
}

func TestCheckStrictFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.log")
	writeFile(t, open, engineLog(t, checktest.Config{Calls: 10, Seed: 1, StopEarly: true}))
	t.Setenv("CALLFSM_STRICT", "true")
	code, _, _ := runCLI(t, "check", open)
	assert.Equal(t, exitFail, code)
}

// runCheck runs the check subcommand in-process with stdin.
func runCheck(t *testing.T, cmd *checkCmd, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.stdout, cmd.stderr, cmd.stdin = &out, &errOut, stdin
	c := cmd.command()
	if err := c.ParseAndRun(context.Background(), args); err != nil {
		if errors.As(err, new(usageError)) {
			return exitUsage, out.String(), errOut.String() + err.Error()
		}
		return exitFail, out.String(), errOut.String() + err.Error()
	}
	return exitOK, out.String(), errOut.String()
}

func TestCheckStdin(t *testing.T) {
	t.Parallel()
	ls := engineLog(t, checktest.Config{Calls: 5, Seed: 2})
	log := strings.Join(ls, "\n") + "\n"
	code, out, _ := runCheck(t, &checkCmd{}, strings.NewReader(log))
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "checked 1 file, ")

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(log + "oops\n"))
	require.NoError(t, zw.Close())
	code, out, _ = runCheck(t, &checkCmd{}, &gz, "-")
	assert.Equal(t, exitFail, code, "gzip on standard input is recognised")
	assert.Contains(t, out, "<stdin>:"+strconv.Itoa(len(ls)+1)+": call ?: malformed: not a JSON object: invalid character 'o' at byte 0\n")
}

func TestCheckMaxFindings(t *testing.T) {
	t.Parallel()
	code, out, _ := runCheck(t, &checkCmd{}, strings.NewReader("a\nb\nc\n"), "--max-findings", "2")
	assert.Equal(t, exitFail, code)
	assert.Equal(t, "<stdin>:1: call ?: malformed: not a JSON object: invalid character 'a' at byte 0\n"+
		"<stdin>:2: call ?: malformed: not a JSON object: invalid character 'b' at byte 0\n"+
		"checked 1 file, 3 lines: 0 events in 0 calls\n"+
		"outcomes: successful 0, missed 0, abandoned 0, network_failure 0, declined 0, busy 0, customer_unavailable 0; not ended 0\n"+
		"errors: 3 (malformed 3)\n"+
		"warnings: 0\n"+
		"listed the first 2 findings (--max-findings); 1 more not listed\n", out)
}

// --timeout changes the spec the time rules use.
func TestCheckTimeoutFlag(t *testing.T) {
	t.Parallel()
	ls := engineLog(t, checktest.Config{Calls: 200, Seed: 3})
	log := strings.Join(ls, "\n") + "\n"
	code, out, _ := runCheck(t, &checkCmd{}, strings.NewReader(log), "--timeout", "ringing=45s")
	assert.Equal(t, exitFail, code)
	assert.Contains(t, out, "early-timeout: only ringing's 45s timeout leads to missed")
	code, _, _ = runCheck(t, &checkCmd{}, strings.NewReader(log), "--timeout", "ringing=0")
	assert.Equal(t, exitFail, code, "missed cannot follow ringing without its timeout")
}

// Progress shows on a terminal, from a second in, and is erased before
// findings and the summary; it never shows in a pipe.
func TestCheckProgress(t *testing.T) {
	t.Parallel()
	ls := engineLog(t, checktest.Config{Calls: 3000, Seed: 4})
	ls = append(ls, "bad")
	log := strings.Join(ls, "\n") + "\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "big.log")
	require.NoError(t, os.WriteFile(path, []byte(log), 0o644))
	clock := time.Unix(0, 0)
	tick := func() time.Time { clock = clock.Add(time.Second); return clock }

	tty := &checkCmd{isTerminal: func(w io.Writer) bool { return true }, now: tick}
	code, out, errOut := runCheck(t, tty, nil, path)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "\r\033[Kchecking: ")
	assert.Regexp(t, `checking: +\d+% \[#*-*\] \d+/\d+ MB, \d+ events/s, \S+ left`, errOut)
	assert.Contains(t, errOut, "\r\033[K", "erased")
	assert.Contains(t, out, ": call ?: malformed:")

	pipe := &checkCmd{isTerminal: func(w io.Writer) bool { return false }, now: tick}
	_, _, errOut = runCheck(t, pipe, nil, path)
	assert.NotContains(t, errOut, "checking")
}

// rulesLog has one example of each rule; docs/check.md shows what callfsm
// check says about it.
func rulesLog() string {
	at := func(id int64, state string, sec int64, opts ...func(*event.Event)) string {
		e := event.Event{
			Event: "popin_outgoing_call_" + state, SessionID: "s-" + strconv.FormatInt(id, 10), UserID: 58559, CallID: id,
			Agent:     event.AgentInfo{Name: "Sasha", Email: "sasha@example.com"},
			User:      event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
			Timestamp: 1771832273 + sec,
		}
		for _, o := range opts {
			o(&e)
		}
		return string(e.AppendJSON(nil))
	}
	return strings.Join([]string{
		`{"event":"popin_outgoing_call_initiated","session_id":"s-1","user_id":58559,"call_id":1,"timestamp":"1771832273"}`,
		`{"event":"popin_outgoing_call_initiated","user_id":58559,"call_id":2,"timestamp":1771832273}`,
		strings.Replace(at(3, "initiated", 0), "initiated", "dialling", 1),
		at(4, "initiated", 0), at(4, "ringing", 1), at(4, "ringing", 1),
		at(5, "ringing", 2), at(5, "accepted", 3), at(5, "started", 4), at(5, "successful", 5),
		at(6, "initiated", 3), at(6, "busy", 4), at(6, "ringing", 5),
		at(7, "initiated", 5), at(7, "accepted", 6), at(7, "started", 7), at(7, "successful", 8),
		at(8, "initiated", 10), at(8, "ringing", 8), at(8, "declined", 11),
		at(9, "initiated", 10), at(9, "ringing", 10), at(9, "missed", 20),
		at(10, "initiated", 10), at(10, "ringing", 11), at(10, "accepted", 45), at(10, "started", 46), at(10, "successful", 47),
		at(11, "initiated", 12), at(11, "ringing", 13, func(e *event.Event) { e.UserID, e.Agent.Name = 58560, "Ravi" }),
		at(11, "declined", 14),
		at(12, "initiated", 14), at(12, "ringing", 15), at(12, "accepted", 16), at(12, "network_failure", 17),
		at(13, "initiated", 18, func(e *event.Event) { e.Participant = event.Agent }), at(13, "abandoned", 19),
		at(14, "initiated", 19), at(14, "ringing", 20), at(14, "started", 21),
		at(15, "initiated", 60), at(15, "busy", 61),
	}, "\n") + "\n"
}

// The example of each rule in docs/check.md is what callfsm check says.
func TestCheckRulesDocumented(t *testing.T) {
	t.Parallel()
	code, out, _ := runCheck(t, &checkCmd{}, strings.NewReader(rulesLog()))
	assert.Equal(t, exitFail, code)
	golden(t, "check/rules.golden", out)
	doc, err := os.ReadFile("../../docs/check.md")
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		assert.Contains(t, string(doc), l, "docs/check.md shows every line of testdata/check/rules.golden")
	}
	for _, r := range check.Rules() {
		assert.Contains(t, out, ": "+string(r)+": ", "rules.log has an example of %s", r)
	}
	text, err := os.ReadFile("testdata/check/text.golden")
	require.NoError(t, err)
	assert.Contains(t, string(doc), string(text), "docs/check.md shows testdata/check/text.golden")
}
