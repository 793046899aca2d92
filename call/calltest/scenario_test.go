package calltest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/calltest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want calltest.Scenario
	}{
		{"", calltest.Scenario{}},
		{"  ,, ", calltest.Scenario{}},
		{"ring accept start end", calltest.Scenario{{Trigger: fsm.Ring}, {Trigger: fsm.Accept}, {Trigger: fsm.Start}, {Trigger: fsm.End}}},
		{"ring, wait:31s", calltest.Scenario{{Trigger: fsm.Ring}, {Wait: 31 * time.Second}}},
		{"ring\taccept\nnetwork_failure:agent", calltest.Scenario{{Trigger: fsm.Ring}, {Trigger: fsm.Accept}, {Trigger: fsm.NetFailure, Participant: event.Agent}}},
		{"wait:1m30s wait:0s wait:250ms", calltest.Scenario{{Wait: 90 * time.Second}, {Wait: 0}, {Wait: 250 * time.Millisecond}}},
		{"network_failure:user", calltest.Scenario{{Trigger: fsm.NetFailure, Participant: event.User}}},
		{"hold", calltest.Scenario{{Trigger: "hold"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := calltest.Parse(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ring wait", `step 2 "wait": want wait:DURATION`},
		{"wait:31", `step 1 "wait:31": bad duration`},
		{"wait:-1s", `negative wait`},
		{"ring timeout", `step 2 "timeout": timeouts are fired by the clock`},
		{"network_failure:both", `participant "both": want "user" or "agent"`},
		{"network_failure:", `participant ""`},
		{":user", `no trigger`},
		{"a:user:x", `participant "user:x"`},
		{`ri"ng`, `a trigger is a name`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := calltest.Parse(tt.in)
			require.ErrorIs(t, err, calltest.ErrScenario)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestScenarioString(t *testing.T) {
	sc := calltest.Scenario{{Trigger: fsm.Ring}, {Wait: 90 * time.Second}, {Trigger: fsm.NetFailure, Participant: event.Agent}}
	assert.Equal(t, "ring wait:1m30s network_failure:agent", sc.String())
	back, err := calltest.Parse(sc.String())
	require.NoError(t, err)
	assert.Equal(t, sc, back)
}

// FuzzParse: no input panics, and whatever parses prints back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"ring accept start end", "ring wait:31s", "ring accept network_failure:user",
		"wait:1h2m3.5s", ",,", "wait:", "x:y:z", "timeout", "ring:agent", "\u00a0ring",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := calltest.Parse(s)
		if err != nil {
			return
		}
		back, err := calltest.Parse(sc.String())
		require.NoError(t, err, "%q printed as %q", s, sc.String())
		require.Equal(t, sc, back, "%q printed as %q", s, sc.String())
	})
}
