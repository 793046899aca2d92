package fsm_test

import (
	"context"
	"testing"
	"time"

	lfsm "github.com/looplab/fsm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/fsm"
)

// table is the transition table, written out independently of
// OutgoingConfig: every legal (state, trigger) pair and where it leads.
var table = map[fsm.State]map[fsm.Trigger]fsm.State{
	fsm.Initiated: {fsm.Ring: fsm.Ringing, fsm.Cancel: fsm.Abandoned, fsm.BusySignal: fsm.Busy, fsm.Unavailable: fsm.CustomerUnavailable, fsm.Timeout: fsm.CustomerUnavailable},
	fsm.Ringing:   {fsm.Accept: fsm.Accepted, fsm.Start: fsm.Started, fsm.Decline: fsm.Declined, fsm.Timeout: fsm.Missed, fsm.Cancel: fsm.Abandoned},
	fsm.Accepted:  {fsm.Start: fsm.Started, fsm.Cancel: fsm.Abandoned, fsm.NetFailure: fsm.NetworkFailure, fsm.Timeout: fsm.NetworkFailure},
	fsm.Started:   {fsm.End: fsm.Successful, fsm.NetFailure: fsm.NetworkFailure},
}

var allStates = []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Accepted, fsm.Started, fsm.Successful, fsm.Missed, fsm.Abandoned, fsm.NetworkFailure, fsm.Declined, fsm.Busy, fsm.CustomerUnavailable}

var allTriggers = []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End, fsm.Cancel, fsm.Decline, fsm.BusySignal, fsm.Unavailable, fsm.NetFailure, fsm.Timeout, "bogus"}

// Every (state, trigger) pair, through the spec's own tables and through a
// real looplab/fsm machine built from it: exactly the table is
// legal, and nothing leaves a terminal state.
func TestOutgoingEveryStateTriggerPair(t *testing.T) {
	spec := fsm.Outgoing()
	ctx := context.Background()
	require.Equal(t, allStates, spec.States())
	for _, st := range allStates {
		for _, tr := range allTriggers {
			want, legal := table[st][tr]
			t.Run(string(st)+"/"+string(tr), func(t *testing.T) {
				got, ok := spec.Next(st, tr)
				assert.Equal(t, legal, ok)
				assert.Equal(t, want, got)

				m := spec.NewFSM(st)
				err := m.Event(ctx, string(tr))
				if legal {
					require.NoError(t, err)
					assert.Equal(t, string(want), m.Current())
					return
				}
				require.Error(t, err)
				assert.Equal(t, string(st), m.Current(), "an illegal trigger must not move the machine")
			})
		}
		_, terminal := table[st]
		assert.Equal(t, !terminal, spec.Terminal(st), "terminal(%s)", st)
		if !terminal {
			assert.Empty(t, spec.Allowed(st))
		}
	}
}

func TestOutgoingAllowedIsSorted(t *testing.T) {
	spec := fsm.Outgoing()
	assert.Equal(t, []fsm.Trigger{"busy", "cancel", "ring", "timeout", "unavailable"}, spec.Allowed(fsm.Initiated))
	assert.Equal(t, []fsm.Trigger{"end", "network_failure"}, spec.Allowed(fsm.Started))
	assert.Nil(t, spec.Allowed("nowhere"))
}

func TestOutgoingTimeoutsAndEvents(t *testing.T) {
	spec := fsm.Outgoing()
	tests := []struct {
		state fsm.State
		d     time.Duration
		to    fsm.State
		ok    bool
	}{
		{fsm.Initiated, 30 * time.Second, fsm.CustomerUnavailable, true},
		{fsm.Ringing, 30 * time.Second, fsm.Missed, true},
		{fsm.Accepted, 30 * time.Second, fsm.NetworkFailure, true},
		{fsm.Started, 0, "", false},
		{fsm.Missed, 0, "", false},
	}
	for _, tt := range tests {
		d, to, ok := spec.Timeout(tt.state)
		assert.Equal(t, tt.d, d, tt.state)
		assert.Equal(t, tt.to, to, tt.state)
		assert.Equal(t, tt.ok, ok, tt.state)
	}
	tr, ok := spec.Transition(fsm.Accepted, fsm.Timeout)
	require.True(t, ok)
	assert.Equal(t, "user", tr.Participant)
	assert.True(t, spec.NeedsParticipant(fsm.NetworkFailure))
	assert.False(t, spec.NeedsParticipant(fsm.Missed))

	assert.Equal(t, "popin_outgoing_call_customer_unavailable", spec.EventName(fsm.CustomerUnavailable))
	for _, st := range allStates {
		got, ok := spec.StateOf(spec.EventName(st))
		assert.True(t, ok)
		assert.Equal(t, st, got)
	}
	_, ok = spec.StateOf("popin_outgoing_call_bogus")
	assert.False(t, ok)
}

func TestWithTimeouts(t *testing.T) {
	spec := fsm.Outgoing()
	custom, err := spec.WithTimeouts(map[fsm.State]time.Duration{fsm.Ringing: 45 * time.Second, fsm.Initiated: 0})
	require.NoError(t, err)
	d, _, ok := custom.Timeout(fsm.Ringing)
	assert.True(t, ok)
	assert.Equal(t, 45*time.Second, d)
	_, _, ok = custom.Timeout(fsm.Initiated)
	assert.False(t, ok, "a zero duration switches the timeout off")
	d, _, _ = spec.Timeout(fsm.Ringing)
	assert.Equal(t, 30*time.Second, d, "the original is unchanged")

	_, err = spec.WithTimeouts(map[fsm.State]time.Duration{fsm.Started: time.Minute})
	assert.ErrorIs(t, err, fsm.ErrInvalidSpec, "started has no timeout transition")
}

func TestNewSpecRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*fsm.Config)
		want   string
	}{
		{"unknown target", func(c *fsm.Config) {
			c.Transitions = append(c.Transitions, fsm.Transition{From: fsm.Started, Trigger: "hold", To: "on_hold"})
		}, `target state "on_hold" is not in States`},
		{"unreachable state", func(c *fsm.Config) {
			c.States = append(c.States, "voicemail")
			c.Terminal = append(c.Terminal, "voicemail")
		}, `state "voicemail" is unreachable`},
		{"live state without way out", func(c *fsm.Config) {
			c.States = append(c.States, "limbo")
			c.Transitions = append(c.Transitions, fsm.Transition{From: fsm.Started, Trigger: "hold", To: "limbo"})
		}, `live state "limbo" has no path to a terminal state`},
		{"terminal with exit", func(c *fsm.Config) {
			c.Transitions = append(c.Transitions, fsm.Transition{From: fsm.Missed, Trigger: fsm.Ring, To: fsm.Ringing})
		}, `terminal state "missed" has an exit`},
		{"duplicate trigger", func(c *fsm.Config) {
			c.Transitions = append(c.Transitions, fsm.Transition{From: fsm.Ringing, Trigger: fsm.Accept, To: fsm.Started})
		}, `trigger "accept" is defined twice from "ringing"`},
		{"self loop", func(c *fsm.Config) {
			c.Transitions = append(c.Transitions, fsm.Transition{From: fsm.Ringing, Trigger: "again", To: fsm.Ringing})
		}, `self loop`},
		{"timeout without transition", func(c *fsm.Config) { c.Timeouts[fsm.Started] = time.Hour }, `state "started" has a timeout but no "timeout" transition`},
		{"negative timeout", func(c *fsm.Config) { c.Timeouts[fsm.Ringing] = -time.Second }, `timeout of "ringing" is negative`},
		{"terminal initial", func(c *fsm.Config) { c.Initial = fsm.Busy }, `initial state "busy" is terminal`},
		{"unknown initial", func(c *fsm.Config) { c.Initial = "dialing" }, `initial state "dialing" is not in States`},
		{"duplicate state", func(c *fsm.Config) { c.States = append(c.States, fsm.Busy) }, `state "busy" is listed twice`},
		{"empty prefix", func(c *fsm.Config) { c.EventPrefix = "" }, `event prefix is empty`},
		{"participant on plain state", func(c *fsm.Config) { c.Transitions[8].Participant = "user" }, `"missed" is not a participant state`},
		{"no terminal", func(c *fsm.Config) { c.Terminal = nil }, `no terminal state`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fsm.OutgoingConfig()
			tt.change(&cfg)
			_, err := fsm.NewSpec(cfg)
			require.ErrorIs(t, err, fsm.ErrInvalidSpec)
			var se *fsm.SpecError
			require.ErrorAs(t, err, &se)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// A user-built lifecycle: an incoming call with another prefix.
func TestCustomSpec(t *testing.T) {
	spec, err := fsm.NewSpec(fsm.Config{
		Name: "incoming", EventPrefix: "popin_incoming_call_", Initial: "offered",
		States:      []fsm.State{"offered", "answered", "completed", "rejected"},
		Terminal:    []fsm.State{"completed", "rejected"},
		Transitions: []fsm.Transition{{From: "offered", Trigger: "answer", To: "answered"}, {From: "offered", Trigger: "reject", To: "rejected"}, {From: "answered", Trigger: "hangup", To: "completed"}, {From: "offered", Trigger: fsm.Timeout, To: "rejected"}},
		Timeouts:    map[fsm.State]time.Duration{"offered": 20 * time.Second},
	})
	require.NoError(t, err)
	assert.Equal(t, "popin_incoming_call_answered", spec.EventName("answered"))
	d, to, ok := spec.Timeout("offered")
	assert.True(t, ok)
	assert.Equal(t, 20*time.Second, d)
	assert.Equal(t, fsm.State("rejected"), to)
	again, err := fsm.NewSpec(spec.Config())
	require.NoError(t, err)
	assert.Equal(t, spec.Transitions(), again.Transitions(), "Config round-trips")
}

func TestAcquireFSMReuses(t *testing.T) {
	spec := fsm.Outgoing()
	m := spec.AcquireFSM(fsm.Ringing)
	require.NoError(t, m.Event(context.Background(), string(fsm.Accept)))
	spec.ReleaseFSM(m)
	m2 := spec.AcquireFSM(fsm.Initiated)
	assert.Equal(t, string(fsm.Initiated), m2.Current(), "a reused machine starts where it is told")
	err := m2.Event(context.Background(), string(fsm.End))
	var inv lfsm.InvalidEventError
	assert.ErrorAs(t, err, &inv)
}

func TestDiagrams(t *testing.T) {
	spec := fsm.Outgoing()
	mm, err := spec.Diagram(fsm.Mermaid)
	require.NoError(t, err)
	assert.Contains(t, mm, "stateDiagram-v2\n    [*] --> initiated\n")
	assert.Contains(t, mm, "    ringing --> missed: timeout\n")
	dot, err := spec.Diagram(fsm.Graphviz)
	require.NoError(t, err)
	assert.Contains(t, dot, `"accepted" -> "network_failure" [ label = "timeout" ];`)
	_, err = spec.Diagram("svg")
	assert.ErrorContains(t, err, `unknown diagram format "svg"`)

	tbl := spec.Table()
	assert.Contains(t, tbl, "| accepted | timeout | network_failure | `popin_outgoing_call_network_failure` | after 30s, participant user |")
	assert.Contains(t, tbl, "| started | network_failure | network_failure | `popin_outgoing_call_network_failure` | participant user or agent |")
}
