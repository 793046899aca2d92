package calltest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/calltest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The 17 cases of the Popin lifecycle, written out by hand: its 14 paths,
// the three network failures by an input once per participant.
var outgoingCases = []string{
	"busy",
	"cancel",
	"ring accept cancel",
	"ring accept network_failure:user",
	"ring accept network_failure:agent",
	"ring accept start end",
	"ring accept start network_failure:user",
	"ring accept start network_failure:agent",
	"ring accept wait:30s",
	"ring cancel",
	"ring decline",
	"ring start end",
	"ring start network_failure:user",
	"ring start network_failure:agent",
	"ring wait:30s",
	"wait:30s",
	"unavailable",
}

// want builds, independently of the engine, the events a case must emit:
// the seed payload of calltest.Details(1), one event per state entered, the
// participant on network_failure (user for the accepted timeout), and each
// timestamp the start plus the waits before it.
func want(spec *fsm.Spec, c calltest.Case) []event.Event {
	d := calltest.Details(1)
	base := event.Event{
		SessionID: d.SessionID, UserID: d.UserID, CallID: d.CallID, ScheduleID: d.ScheduleID,
		Agent: d.Agent, User: d.User, Meta: d.Meta,
	}
	ts := int64(calltest.StartUnix)
	ev := base
	ev.Event, ev.Timestamp = "popin_outgoing_call_initiated", ts
	out := []event.Event{ev}
	for _, s := range c.Scenario {
		if s.Trigger == "" {
			ts += int64(s.Wait / time.Second)
		}
		from, _ := spec.StateOf(out[len(out)-1].Event)
		trigger := s.Trigger
		if trigger == "" {
			trigger = fsm.Timeout
		}
		to, ok := spec.Next(from, trigger)
		if !ok {
			panic(fmt.Sprintf("case %q: no %s from %s", c.Name, trigger, from))
		}
		ev := base
		ev.Event, ev.Timestamp, ev.Participant = "popin_outgoing_call_"+string(to), ts, s.Participant
		if to == fsm.NetworkFailure && trigger == fsm.Timeout {
			ev.Participant = event.User
		}
		out = append(out, ev)
	}
	return out
}

// Every path of the default lifecycle, run through the real engine on the
// virtual clock, emits exactly the expected events and ends the call in the
// path's terminal state.
func TestEveryPathOfOutgoing(t *testing.T) {
	spec := fsm.Outgoing()
	cases := calltest.Paths(spec)
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.Name
	}
	require.Equal(t, outgoingCases, names)

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			e := calltest.New(t, calltest.Config{})
			tr, err := e.Play(c.Scenario)
			require.NoError(t, err)
			tr.Expect(t, c.Want...)
			assert.Equal(t, want(spec, c), tr.Events)
			assert.Equal(t, c.Path.End(), tr.Call.State())
			var ended *call.EndedError
			require.ErrorAs(t, tr.Call.Err(), &ended)
			assert.Equal(t, c.Path.End(), ended.State)
			assert.Zero(t, e.Len(), "no call left live")
			assert.Zero(t, e.Clock.Len(), "no timer left armed")
		})
	}
}

// The covering cases take every transition of the lifecycle, and each runs
// clean through the engine.
func TestCoveringPathsOfOutgoing(t *testing.T) {
	spec := fsm.Outgoing()
	taken := map[string]bool{}
	for _, c := range calltest.CoveringPaths(spec) {
		e := calltest.New(t, calltest.Config{})
		tr, err := e.Play(c.Scenario)
		require.NoError(t, err, c.Name)
		tr.Expect(t, c.Want...)
		assert.Equal(t, want(spec, c), tr.Events, c.Name)
		for _, step := range c.Path {
			taken[string(step.From)+" "+string(step.Trigger)] = true
		}
	}
	assert.Len(t, taken, len(spec.Transitions()))
}

// recorder is a calltest.T that keeps the failure messages.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestExpectSaysWhatDiffers(t *testing.T) {
	e := calltest.New(t, calltest.Config{})
	tr, err := e.Run("ring accept")
	require.NoError(t, err)

	var r recorder
	assert.False(t, tr.Expect(&r, fsm.Initiated, fsm.Ringing, fsm.Missed))
	assert.False(t, e.Expect(&r, tr.Call.ID(), "initiated", "ringing"))
	assert.False(t, e.Expect(&r, 99, fsm.Initiated))
	assert.True(t, e.Expect(&r, 99))
	assert.True(t, tr.Expect(&r, "initiated", "ringing", "accepted"))
	assert.Equal(t, []string{
		"call 1: want initiated→ringing→missed, got initiated→ringing→accepted",
		"call 1: want initiated→ringing, got initiated→ringing→accepted",
		"call 99: want initiated, got (no events)",
	}, r.errs)
	assert.Equal(t, "initiated→ringing→accepted", tr.String())
}

// Waits move the virtual clock; the ring timer fires exactly at its
// deadline, not before.
func TestWaitsFireTimersAtTheirDeadline(t *testing.T) {
	for _, tt := range []struct {
		scenario string
		want     []fsm.State
	}{
		{"ring wait:29s", []fsm.State{fsm.Initiated, fsm.Ringing}},
		{"ring wait:29.999s", []fsm.State{fsm.Initiated, fsm.Ringing}},
		{"ring wait:30s", []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Missed}},
		{"ring wait:31s", []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Missed}},
		{"ring wait:10s wait:10s wait:10s", []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Missed}},
		{"ring wait:29s accept wait:29s start wait:1h end", []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Accepted, fsm.Started, fsm.Successful}},
		{"wait:5s ring wait:5s start wait:2m network_failure:agent", []fsm.State{fsm.Initiated, fsm.Ringing, fsm.Started, fsm.NetworkFailure}},
	} {
		t.Run(tt.scenario, func(t *testing.T) {
			e := calltest.New(t, calltest.Config{})
			tr, err := e.Run(tt.scenario)
			require.NoError(t, err)
			tr.Expect(t, tt.want...)
		})
	}
}

func TestTimestampsFollowTheClock(t *testing.T) {
	e := calltest.New(t, calltest.Config{Start: time.Unix(1000, 0)})
	tr, err := e.Run("wait:5s ring wait:45s")
	require.NoError(t, err)
	var got []int64
	for _, ev := range tr.Events {
		got = append(got, ev.Timestamp)
	}
	assert.Equal(t, []int64{1000, 1005, 1035}, got, "missed at ring + 30 s, not at the end of the wait")
}

func TestPlayStopsAtTheRefusedStep(t *testing.T) {
	tests := []struct {
		scenario string
		kind     error
		index    int
		trace    string
		msg      string
	}{
		{"ring end", call.ErrIllegalTransition, 1, "initiated→ringing",
			`calltest: step 2 "end": call 1: illegal transition: cannot "end" in state "ringing" (allowed: accept, cancel, decline, start)`},
		{"busy ring", call.ErrCallEnded, 1, "initiated→busy", `calltest: step 2 "ring": call 1: call already ended: busy`},
		{"ring wait:30s accept", call.ErrCallEnded, 2, "initiated→ringing→missed", `step 3 "accept": call 1: call already ended: missed`},
		{"ring hold", call.ErrInvalidInput, 1, "initiated→ringing", `"hold" is not a trigger`},
		{"ring accept network_failure", call.ErrInvalidInput, 2, "initiated→ringing→accepted", `participant`},
		{"ring:user", call.ErrInvalidInput, 0, "initiated", `only allowed into a participant state`},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			e := calltest.New(t, calltest.Config{})
			tr, err := e.Run(tt.scenario)
			require.ErrorIs(t, err, tt.kind)
			var se *calltest.StepError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.index, se.Index)
			assert.Contains(t, err.Error(), tt.msg)
			require.NotNil(t, tr)
			assert.Equal(t, tt.trace, tr.String())
		})
	}
}

func TestRunRejectsABadScenario(t *testing.T) {
	e := calltest.New(t, calltest.Config{})
	tr, err := e.Run("ring wait:soon")
	require.ErrorIs(t, err, calltest.ErrScenario)
	assert.Nil(t, tr)
	assert.Zero(t, e.Len(), "no call is created for a scenario that does not parse")
}

func TestCallsGetTheirOwnIDsAndDetails(t *testing.T) {
	e := calltest.New(t, calltest.Config{Details: func(id int64) call.Details {
		d := calltest.Details(id)
		d.CallID = 1000 + id
		d.Agent.Name = "Ravi"
		return d
	}})
	a, err := e.NewCall()
	require.NoError(t, err)
	b, err := e.Run("ring")
	require.NoError(t, err)
	assert.Equal(t, int64(1001), a.ID())
	assert.Equal(t, int64(1002), b.Call.ID())
	assert.Equal(t, "Ravi", b.Events[0].Agent.Name)
	assert.NotEqual(t, a.Details().SessionID, b.Call.Details().SessionID)
	e.Expect(t, 1001, fsm.Initiated)
	assert.Equal(t, []fsm.State{fsm.Initiated, fsm.Ringing}, e.States(1002))
	assert.Equal(t, 2, e.Len())
}

func TestDetailsAreTheSeedPayload(t *testing.T) {
	d := calltest.Details(28844)
	assert.Equal(t, "bf0b3a76-0596-4602-a2c3-000000028844", d.SessionID)
	assert.Equal(t, int64(58559), d.UserID)
	assert.Equal(t, "Sasha", d.Agent.Name)
	assert.Equal(t, "+91", d.User.CountryCode)
	assert.Equal(t, "SKU-123", d.Meta.Product.ID)
}

// A lifecycle of one's own: the engine, the scenarios and the paths follow
// the spec.
func TestCustomSpec(t *testing.T) {
	spec, err := fsm.NewSpec(fsm.Config{
		Name: "incoming", EventPrefix: "popin_incoming_call_", Initial: "offered",
		States:   []fsm.State{"offered", "answered", "completed", "rejected"},
		Terminal: []fsm.State{"completed", "rejected"},
		Transitions: []fsm.Transition{
			{From: "offered", Trigger: "answer", To: "answered"},
			{From: "offered", Trigger: fsm.Timeout, To: "rejected"},
			{From: "answered", Trigger: "hangup", To: "completed"},
		},
		Timeouts: map[fsm.State]time.Duration{"offered": 20 * time.Second},
	})
	require.NoError(t, err)
	cases := calltest.Paths(spec)
	var names []string
	for _, c := range cases {
		names = append(names, c.Name)
		e := calltest.New(t, calltest.Config{Spec: spec})
		tr, err := e.Play(c.Scenario)
		require.NoError(t, err, c.Name)
		tr.Expect(t, c.Want...)
		assert.Equal(t, "popin_incoming_call_"+string(c.Path.End()), tr.Events[len(tr.Events)-1].Event)
	}
	assert.Equal(t, []string{"answer hangup", "wait:20s"}, names)

	e := calltest.New(t, calltest.Config{Spec: spec})
	tr, err := e.Run("ring")
	require.Error(t, err)
	assert.True(t, errors.Is(err, call.ErrInvalidInput), "ring is not a trigger of this lifecycle: %v", err)
	assert.Equal(t, "offered", tr.String())
}
