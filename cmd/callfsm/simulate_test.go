package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSimulateGolden(t *testing.T) {
	code, out, errOut := runCLI(t, "simulate", "--calls", "4", "--seed", "7", "-q")
	require.Equal(t, exitOK, code, errOut)
	assert.Empty(t, errOut, "-q prints no summary")
	golden(t, "simulate/calls4-seed7.jsonl", out)
}

func TestSimulateFilesAndTruth(t *testing.T) {
	dir := t.TempDir()
	log, truth := filepath.Join(dir, "log.jsonl"), filepath.Join(dir, "truth.jsonl")
	args := []string{"simulate", "--calls", "40", "--seed", "3", "--rate", "2",
		"--faults", "duplicate=0.05,reorder=0.05,drop=0.05,illegal=0.05", "--truth", truth, "-o", log}
	code, out, errOut := runCLI(t, args...)
	require.Equal(t, exitOK, code, errOut)
	assert.Empty(t, out, "the log goes to -o")
	assert.Regexp(t, `^callfsm simulate: 40 calls, \d+ events, \d+ lines, .*findings expected\n$`, errOut)
	gotLog, err := os.ReadFile(log)
	require.NoError(t, err)
	gotTruth, err := os.ReadFile(truth)
	require.NoError(t, err)
	golden(t, "simulate/faults.jsonl", string(gotLog))
	golden(t, "simulate/faults.truth.jsonl", string(gotTruth))

	// The same flags give the same bytes, also on standard output.
	code, out, _ = runCLI(t, args[:len(args)-2]...)
	require.Equal(t, exitOK, code)
	assert.Equal(t, string(gotLog), out)
}

func TestSimulateFlagsFromEnvironment(t *testing.T) {
	t.Setenv("CALLFSM_CALLS", "4")
	t.Setenv("CALLFSM_SEED", "7")
	code, out, errOut := runCLI(t, "simulate", "-q")
	require.Equal(t, exitOK, code, errOut)
	golden(t, "simulate/calls4-seed7.jsonl", out)
}

func TestSimulateMixAndTimeout(t *testing.T) {
	code, out, errOut := runCLI(t, "simulate", "--calls", "30", "--mix", "missed=1", "--timeout", "ringing=10s")
	require.Equal(t, exitOK, code, errOut)
	assert.Equal(t, 30, strings.Count(out, `"event":"popin_outgoing_call_missed"`))
	assert.Equal(t, 90, strings.Count(out, "\n"))
	assert.Contains(t, errOut, "missed 30")
}

func TestSimulateUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no calls", []string{"simulate"}, "--calls 0: want the number of calls, at least 1"},
		{"negative calls", []string{"simulate", "--calls", "-3"}, "--calls -3"},
		{"bad rate", []string{"simulate", "--calls", "1", "--rate", "0"}, "--rate 0: want a positive number"},
		{"bad mix", []string{"simulate", "--calls", "1", "--mix", "successful"}, `--mix: mix: "successful": want KEY=NUMBER`},
		{"unknown outcome", []string{"simulate", "--calls", "1", "--mix", "hungup=3"}, `mix: unknown outcome "hungup" (want one of successful, missed, abandoned, network_failure, declined, busy, customer_unavailable)`},
		{"bad faults", []string{"simulate", "--calls", "1", "--faults", "lost=0.1"}, `unknown fault "lost"`},
		{"fault rate", []string{"simulate", "--calls", "1", "--faults", "drop=2"}, "drop=2: want a rate from 0 to 1"},
		{"timeout off", []string{"simulate", "--calls", "1", "--timeout", "ringing=0"}, `outcome "missed" cannot happen in this lifecycle: the ringing timeout is switched off`},
		{"bad timeout", []string{"simulate", "--calls", "1", "--timeout", "started=1m"}, `has a timeout but no "timeout" transition`},
		{"extra argument", []string{"simulate", "--calls", "1", "x"}, "simulate takes no arguments"},
		{"bad seed", []string{"simulate", "--calls", "1", "--seed", "-1"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, errOut, tt.want)
			assert.Empty(t, out)
		})
	}
}

func TestSimulateCannotWrite(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "log.jsonl")
	code, _, errOut := runCLI(t, "simulate", "--calls", "1", "-o", missing)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "no such file or directory")

	code, _, errOut = runCLI(t, "simulate", "--calls", "1", "-o", filepath.Join(t.TempDir(), "log"), "--truth", missing)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "no such file or directory")
}
