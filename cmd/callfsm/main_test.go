package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// runCLI runs callfsm in-process and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got, "run go test ./cmd/callfsm -update to accept")
}

func TestDiagram(t *testing.T) {
	for _, tt := range []struct {
		args []string
		file string
	}{
		{[]string{"diagram"}, "diagram.mermaid"},
		{[]string{"diagram", "--format", "dot"}, "diagram.dot"},
	} {
		code, out, errOut := runCLI(t, tt.args...)
		require.Equal(t, exitOK, code, errOut)
		golden(t, tt.file, out)
	}
}

func TestDiagramFormatFromEnvironment(t *testing.T) {
	t.Setenv("CALLFSM_FORMAT", "dot")
	code, out, _ := runCLI(t, "diagram")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "digraph fsm {")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "SUBCOMMANDS"},
		{"unknown flag", []string{"diagram", "--colour"}, "flag provided but not defined: -colour"},
		{"bad format", []string{"diagram", "--format", "svg"}, `--format "svg": want mermaid or dot`},
		{"bad timeout", []string{"diagram", "--timeout", "ringing"}, "want STATE=DURATION"},
		{"timeout on untimed state", []string{"diagram", "--timeout", "started=1m"}, `state "started" has a timeout but no "timeout" transition`},
		{"extra argument", []string{"diagram", "x"}, "diagram takes no arguments"},
		{"help for unknown", []string{"help", "nope"}, `unknown subcommand "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Contains(t, errOut, tt.want)
		})
	}
}

func TestTimeoutFlagChangesDiagramSpec(t *testing.T) {
	code, out, errOut := runCLI(t, "diagram", "--timeout", "ringing=0", "--timeout", "initiated=10s")
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "ringing --> missed: timeout", "looplab draws every transition, timed or not")
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	require.Equal(t, exitOK, code)
	golden(t, "help.txt", out)
	code, out, _ = runCLI(t, "help", "diagram")
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "-format")
	code, out, _ = runCLI(t, "version")
	require.Equal(t, exitOK, code)
	assert.Regexp(t, `^callfsm \S+ \(commit \S+, go1\.\S+\)\n$`, out)
}
