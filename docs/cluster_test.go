package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/cluster"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/webhook"
)

// cluster.md is written by hand from runs of the real binaries (its
// console blocks were captured then). These tests keep what it names true:
// every flag its commands use exists, and the names and defaults it gives
// are the code's.

func readClusterDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("cluster.md")
	require.NoError(t, err)
	return string(b)
}

// cliFlags returns the flags cmd/callfsm defines, by subcommand file.
func cliFlags(t *testing.T, files ...string) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	def := regexp.MustCompile(`fs\.\w*Var\([^,]+, "([a-z-]+)"`)
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join("..", "cmd", "callfsm", f))
		require.NoError(t, err)
		for _, m := range def.FindAllStringSubmatch(string(src), -1) {
			flags[m[1]] = true
		}
	}
	return flags
}

func TestClusterDocCommands(t *testing.T) {
	doc := readClusterDoc(t)
	files := map[string][]string{
		"serve": {"serve.go", "nats.go"},
		"log":   {"log.go", "nats.go"},
		"check": {"check.go"},
	}
	cmd := regexp.MustCompile(`callfsm (serve|log|check)((?: [^\n&]*)?)`)
	flag := regexp.MustCompile(`(?:^|\s)--?([a-z][a-z-]*)`)
	seen := 0
	for _, m := range cmd.FindAllStringSubmatch(doc, -1) {
		defined := cliFlags(t, files[m[1]]...)
		for _, f := range flag.FindAllStringSubmatch(m[2], -1) {
			name := f[1]
			if name == "o" && m[1] == "log" {
				continue // -o: the log command's output flag, a short name
			}
			require.True(t, defined[name], "cluster.md: callfsm %s --%s: no such flag", m[1], name)
			seen++
		}
	}
	require.Greater(t, seen, 5, "no flags found in cluster.md's commands")
}

func TestClusterDocNames(t *testing.T) {
	doc := readClusterDoc(t)
	for _, want := range []string{
		"`" + jetstream.DefaultStream + "`",
		jetstream.DefaultSubjects + ".<partition>.<call_id>",
		"`" + jetstream.DefaultStream + "_TIMERS`",
		"`PinnedTTL` (" + strconv.Itoa(int(webhook.DefaultPinnedTTL/time.Second)) + " s)",
		"`TimerLead` (" + strconv.Itoa(int(cluster.DefaultTimerLead/time.Second)) + " s)",
		"`TimerAckWait` (" + strconv.Itoa(int(cluster.DefaultTimerAckWait/time.Second)) + " s)",
		"modulo " + strconv.Itoa(jetstream.DefaultPartitions),
	} {
		require.True(t, strings.Contains(doc, want), "cluster.md does not say %q", want)
	}
}
