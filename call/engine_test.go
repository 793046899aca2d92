package call_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1771832273, 0)

// rig is an engine on a virtual clock with a recording emitter.
type rig struct {
	eng   *call.Engine
	clock *timeout.Virtual
	rec   *emitter.Recorder
}

func newRig(t *testing.T, cfg call.Config) *rig {
	t.Helper()
	r := &rig{clock: timeout.NewVirtual(t0), rec: &emitter.Recorder{}}
	cfg.Clock = r.clock
	if cfg.Emitter == nil {
		cfg.Emitter = r.rec
	}
	if cfg.NewSessionID == nil {
		cfg.NewSessionID = func() string { return "bf0b3a76-0596-4602-a2c3-43e0db01b991" }
	}
	eng, err := call.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = eng.Close() })
	r.eng = eng
	return r
}

func details(id int64) call.Details {
	return call.Details{
		CallID: id, UserID: 58559,
		Agent: event.AgentInfo{Name: "Sasha", Email: "menonaiswarya0@gmail.com"},
		User:  event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta:  event.Meta{Product: event.Product{Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones"}},
	}
}

// names returns the states entered, from the events recorded for a call.
func names(evs []event.Event, id int64) []string {
	var out []string
	for _, ev := range evs {
		if ev.CallID == id {
			out = append(out, ev.Event[len("popin_outgoing_call_"):])
		}
	}
	return out
}

func TestFullLifecycleEmitsSeedPayloads(t *testing.T) {
	r := newRig(t, call.Config{})
	ctx := context.Background()
	c, err := r.eng.Create(ctx, details(28844))
	require.NoError(t, err)
	for _, step := range []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End} {
		r.clock.Advance(2 * time.Second)
		_, err := c.Fire(ctx, step)
		require.NoError(t, err, step)
	}
	evs := r.rec.Events()
	assert.Equal(t, []string{"initiated", "ringing", "accepted", "started", "successful"}, names(evs, 28844))
	for i, ev := range evs {
		assert.Equal(t, t0.Unix()+int64(2*i), ev.Timestamp)
		assert.Equal(t, "bf0b3a76-0596-4602-a2c3-43e0db01b991", ev.SessionID)
		assert.Equal(t, event.NoParticipant, ev.Participant)
	}
	// The first event is the seed's own sample payload, byte for byte.
	assert.JSONEq(t, `{"event":"popin_outgoing_call_initiated","session_id":"bf0b3a76-0596-4602-a2c3-43e0db01b991","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"Sasha","email":"menonaiswarya0@gmail.com"},"user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}},"timestamp":1771832273}`,
		string(evs[0].AppendJSON(nil)))
	assert.Equal(t, fsm.Successful, c.State())
	assert.Equal(t, 0, r.eng.Len(), "an ended call leaves the registry")
	select {
	case <-c.Done():
	default:
		t.Fatal("Done is not closed after the call ended")
	}
	var ended *call.EndedError
	require.ErrorAs(t, c.Err(), &ended)
	assert.Equal(t, fsm.Successful, ended.State)
}

func TestSessionIDGeneratedWithUUID(t *testing.T) {
	eng, err := call.New(call.Config{Clock: timeout.NewVirtual(t0)})
	require.NoError(t, err)
	defer eng.Close()
	a, err := eng.Create(context.Background(), details(1))
	require.NoError(t, err)
	b, err := eng.Create(context.Background(), details(2))
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, a.Details().SessionID)
	assert.NotEqual(t, a.Details().SessionID, b.Details().SessionID)
	d := details(3)
	d.SessionID = "given"
	c, err := eng.Create(context.Background(), d)
	require.NoError(t, err)
	assert.Equal(t, "given", c.Details().SessionID)
}

// pathTo lists the inputs (and waits) that bring a new call to each state.
var pathTo = map[fsm.State][]string{
	fsm.Initiated:           {},
	fsm.Ringing:             {"ring"},
	fsm.Accepted:            {"ring", "accept"},
	fsm.Started:             {"ring", "accept", "start"},
	fsm.Successful:          {"ring", "start", "end"},
	fsm.Missed:              {"ring", "wait"},
	fsm.Abandoned:           {"cancel"},
	fsm.NetworkFailure:      {"ring", "accept", "start", "network_failure"},
	fsm.Declined:            {"ring", "decline"},
	fsm.Busy:                {"busy"},
	fsm.CustomerUnavailable: {"wait"},
}

// table is the transition table, for the user-fired triggers.
var table = map[fsm.State]map[fsm.Trigger]fsm.State{
	fsm.Initiated: {fsm.Ring: fsm.Ringing, fsm.Cancel: fsm.Abandoned, fsm.BusySignal: fsm.Busy, fsm.Unavailable: fsm.CustomerUnavailable},
	fsm.Ringing:   {fsm.Accept: fsm.Accepted, fsm.Start: fsm.Started, fsm.Decline: fsm.Declined, fsm.Cancel: fsm.Abandoned},
	fsm.Accepted:  {fsm.Start: fsm.Started, fsm.Cancel: fsm.Abandoned, fsm.NetFailure: fsm.NetworkFailure},
	fsm.Started:   {fsm.End: fsm.Successful, fsm.NetFailure: fsm.NetworkFailure},
}

func drive(t *testing.T, r *rig, c *call.Call, steps []string) {
	t.Helper()
	for _, s := range steps {
		if s == "wait" {
			r.clock.Advance(fsm.DefaultTimeout)
			continue
		}
		_, err := c.Apply(context.Background(), call.Input{Trigger: fsm.Trigger(s), Participant: participantFor(fsm.Trigger(s))})
		require.NoError(t, err, s)
	}
}

// Every (state, trigger) pair through the engine: legal ones move the call
// and emit the target's event, illegal ones name the state and what is
// allowed, and ended calls say how they ended.
func TestEngineEveryStateTriggerPair(t *testing.T) {
	triggers := []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End, fsm.Cancel, fsm.Decline, fsm.BusySignal, fsm.Unavailable, fsm.NetFailure}
	var id int64
	for st, path := range pathTo {
		for _, tr := range triggers {
			id++
			t.Run(fmt.Sprintf("%s/%s", st, tr), func(t *testing.T) {
				r := newRig(t, call.Config{})
				c, err := r.eng.Create(context.Background(), details(id))
				require.NoError(t, err)
				drive(t, r, c, path)
				require.Equal(t, st, c.State())
				before := len(r.rec.Events())

				got, err := r.eng.Apply(context.Background(), id, call.Input{Trigger: tr, Participant: participantFor(tr)})
				want, legal := table[st][tr]
				switch {
				case legal:
					require.NoError(t, err)
					assert.Equal(t, want, got)
					evs := r.rec.Events()
					require.Len(t, evs, before+1)
					assert.Equal(t, "popin_outgoing_call_"+string(want), evs[before].Event)
				case r.eng.Spec().Terminal(st):
					var ended *call.EndedError
					require.ErrorAs(t, err, &ended)
					assert.ErrorIs(t, err, call.ErrCallEnded)
					assert.Equal(t, st, ended.State)
					assert.Len(t, r.rec.Events(), before)
				default:
					var te *call.TransitionError
					require.ErrorAs(t, err, &te)
					assert.ErrorIs(t, err, call.ErrIllegalTransition)
					assert.Equal(t, st, te.State)
					assert.Equal(t, tr, te.Trigger)
					assert.Len(t, te.Allowed, len(table[st]))
					assert.NotContains(t, te.Allowed, fsm.Timeout)
					assert.Equal(t, st, got)
					assert.Equal(t, st, c.State())
					assert.Len(t, r.rec.Events(), before)
				}
			})
		}
	}
}

func participantFor(tr fsm.Trigger) event.Participant {
	if tr == fsm.NetFailure {
		return event.User
	}
	return ""
}

func TestTimeoutsFireAtTheDeadline(t *testing.T) {
	tests := []struct {
		name        string
		path        []string
		want        fsm.State
		participant event.Participant
	}{
		{"initiated reach timeout", nil, fsm.CustomerUnavailable, ""},
		{"ringing timeout", []string{"ring"}, fsm.Missed, ""},
		{"accepted connect timeout", []string{"ring", "accept"}, fsm.NetworkFailure, event.User},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, call.Config{})
			c, err := r.eng.Create(context.Background(), details(7))
			require.NoError(t, err)
			entered := r.clock.Now()
			for _, step := range tt.path {
				r.clock.Advance(5 * time.Second) // not at the previous state's deadline
				drive(t, r, c, []string{step})
				entered = r.clock.Now()
			}

			r.clock.Advance(fsm.DefaultTimeout - time.Nanosecond)
			require.NotEqual(t, tt.want, c.State(), "fired early")
			r.clock.Advance(time.Nanosecond)
			require.Equal(t, tt.want, c.State())

			evs := r.rec.Events()
			last := evs[len(evs)-1]
			assert.Equal(t, "popin_outgoing_call_"+string(tt.want), last.Event)
			assert.Equal(t, entered.Add(fsm.DefaultTimeout).Unix(), last.Timestamp)
			assert.Equal(t, tt.participant, last.Participant)
		})
	}
}

func TestStartedHasNoTimeoutAndTimersAreDisarmed(t *testing.T) {
	r := newRig(t, call.Config{})
	c, err := r.eng.Create(context.Background(), details(9))
	require.NoError(t, err)
	drive(t, r, c, []string{"ring", "accept", "start"})
	_, armed := c.Deadline()
	assert.False(t, armed)
	assert.Equal(t, 0, r.clock.Len(), "leaving a timed state disarms its timer")
	r.clock.Advance(24 * time.Hour)
	assert.Equal(t, fsm.Started, c.State())
}

func TestTimeoutsConfigurable(t *testing.T) {
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{fsm.Ringing: 45 * time.Second, fsm.Initiated: 0})
	require.NoError(t, err)
	r := newRig(t, call.Config{Spec: spec})
	c, err := r.eng.Create(context.Background(), details(1))
	require.NoError(t, err)
	r.clock.Advance(time.Hour)
	assert.Equal(t, fsm.Initiated, c.State(), "switched off")
	drive(t, r, c, []string{"ring"})
	r.clock.Advance(44 * time.Second)
	assert.Equal(t, fsm.Ringing, c.State())
	r.clock.Advance(time.Second)
	assert.Equal(t, fsm.Missed, c.State())
}

func TestErrors(t *testing.T) {
	r := newRig(t, call.Config{Grace: time.Minute})
	ctx := context.Background()

	_, err := r.eng.Fire(ctx, 404, fsm.Ring)
	var ce *call.CallError
	require.ErrorAs(t, err, &ce)
	assert.ErrorIs(t, err, call.ErrUnknownCall)
	assert.Equal(t, int64(404), ce.CallID)

	c, err := r.eng.Create(ctx, details(1))
	require.NoError(t, err)
	_, err = r.eng.Create(ctx, details(1))
	assert.ErrorIs(t, err, call.ErrCallExists)
	assert.EqualError(t, err, "call 1: call_id already live")

	_, err = r.eng.Fire(ctx, 1, fsm.End)
	assert.EqualError(t, err, `call 1: illegal transition: cannot "end" in state "initiated" (allowed: busy, cancel, ring, unavailable)`)

	for _, tc := range []struct {
		in    call.Input
		field string
	}{
		{call.Input{Trigger: fsm.Timeout}, "trigger"},
		{call.Input{Trigger: "hold"}, "trigger"},
		{call.Input{Trigger: fsm.Ring, Participant: event.User}, "participant"},
	} {
		_, err = c.Apply(ctx, tc.in)
		var ie *call.InputError
		require.ErrorAs(t, err, &ie, "%+v", tc.in)
		assert.Equal(t, tc.field, ie.Field)
		assert.ErrorIs(t, err, call.ErrInvalidInput)
	}
	drive(t, r, c, []string{"ring", "accept"})
	for _, p := range []event.Participant{"", "both"} {
		_, err = c.Apply(ctx, call.Input{Trigger: fsm.NetFailure, Participant: p})
		assert.ErrorContains(t, err, `participant: network_failure needs participant "user" or "agent"`)
		assert.Equal(t, fsm.Accepted, c.State(), "a refused input changes nothing")
	}
	_, err = c.Apply(ctx, call.Input{Trigger: fsm.NetFailure, Participant: event.Agent})
	require.NoError(t, err)
	assert.Equal(t, event.Agent, r.rec.Events()[3].Participant)

	// Ended: the id answers how it ended for the grace period, then is unknown.
	st, err := r.eng.Fire(ctx, 1, fsm.End)
	assert.EqualError(t, err, "call 1: call already ended: network_failure")
	assert.Equal(t, fsm.NetworkFailure, st)
	r.clock.Advance(time.Minute)
	_, err = r.eng.Fire(ctx, 1, fsm.End)
	assert.ErrorIs(t, err, call.ErrCallEnded)
	r.clock.Advance(time.Second)
	_, err = r.eng.Fire(ctx, 1, fsm.End)
	assert.ErrorIs(t, err, call.ErrUnknownCall)

	for _, d := range []call.Details{{CallID: 0}, {CallID: -5}, {CallID: 5, UserID: -1}} {
		_, err = r.eng.Create(ctx, d)
		assert.ErrorIs(t, err, call.ErrInvalidInput)
	}
	_, err = call.New(call.Config{Grace: -1})
	assert.Error(t, err)
}

// Tombstones rotate: many calls ending over many grace periods are
// forgotten, so memory follows live calls.
func TestEndedCallsAreForgotten(t *testing.T) {
	r := newRig(t, call.Config{Grace: time.Second})
	ctx := context.Background()
	for i := range int64(1000) {
		c, err := r.eng.Create(ctx, details(i+1))
		require.NoError(t, err)
		_, err = c.Fire(ctx, fsm.Cancel)
		require.NoError(t, err)
		r.clock.Advance(100 * time.Millisecond)
	}
	assert.Equal(t, 0, r.eng.Len())
	_, err := r.eng.Fire(ctx, 1, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrUnknownCall)
	_, err = r.eng.Fire(ctx, 1000, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrCallEnded)
	// An ended id may be reused at once.
	_, err = r.eng.Create(ctx, details(1000))
	assert.NoError(t, err)
}

var errSinkDown = errors.New("sink down")

// A transition commits only once its event is emitted.
func TestEmitFailureLeavesCallUnchanged(t *testing.T) {
	var fail bool
	var mu sync.Mutex
	rec := &emitter.Recorder{}
	sink := emitter.Func(func(ctx context.Context, ev event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errSinkDown
		}
		return rec.Emit(ctx, ev)
	})
	var reported []error
	r := newRig(t, call.Config{Emitter: sink, RetryDelay: 5 * time.Second, OnError: func(id int64, err error) { reported = append(reported, err) }})
	ctx := context.Background()
	setFail := func(v bool) { mu.Lock(); fail = v; mu.Unlock() }

	setFail(true)
	_, err := r.eng.Create(ctx, details(1))
	assert.ErrorIs(t, err, errSinkDown)
	assert.ErrorIs(t, err, call.ErrEmit)
	_, err = r.eng.Fire(ctx, 1, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrUnknownCall, "a call whose first event failed does not exist")

	setFail(false)
	c, err := r.eng.Create(ctx, details(1))
	require.NoError(t, err)
	setFail(true)
	st, err := c.Fire(ctx, fsm.Ring)
	var ee *call.EmitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, "popin_outgoing_call_ringing", ee.Event)
	assert.Equal(t, fsm.Initiated, st)
	assert.Equal(t, fsm.Initiated, c.State())

	// The reach timeout fails to emit: reported, then retried until it lands,
	// with the deadline as its timestamp.
	r.clock.Advance(fsm.DefaultTimeout)
	require.Len(t, reported, 1)
	assert.ErrorIs(t, reported[0], errSinkDown)
	assert.Equal(t, fsm.Initiated, c.State())
	setFail(false)
	r.clock.Advance(5 * time.Second)
	assert.Equal(t, fsm.CustomerUnavailable, c.State())
	evs := rec.Events()
	assert.Equal(t, []string{"initiated", "customer_unavailable"}, names(evs, 1))
	assert.Equal(t, t0.Add(fsm.DefaultTimeout).Unix(), evs[1].Timestamp)
}

// A timeout racing an input yields exactly one transition: the ring timer
// fires in one goroutine while another accepts, many times over.
func TestTimeoutRacingInputVirtualClock(t *testing.T) {
	for i := range 500 {
		r := newRig(t, call.Config{})
		ctx := context.Background()
		c, err := r.eng.Create(ctx, details(1))
		require.NoError(t, err)
		drive(t, r, c, []string{"ring"})
		r.clock.Advance(fsm.DefaultTimeout - time.Millisecond)

		var wg sync.WaitGroup
		var acceptErr error
		wg.Go(func() { r.clock.Advance(time.Millisecond) })
		wg.Go(func() { _, acceptErr = c.Fire(ctx, fsm.Accept) })
		wg.Wait()

		got := names(r.rec.Events(), 1)
		require.Len(t, got, 3, "run %d: %v", i, got)
		switch got[2] {
		case "missed":
			assert.ErrorIs(t, acceptErr, call.ErrCallEnded)
		case "accepted":
			assert.NoError(t, acceptErr)
			assert.Equal(t, 1, r.clock.Len(), "the connect timer replaces the ring timer")
		default:
			t.Fatalf("run %d: unexpected %v", i, got)
		}
		_ = r.eng.Close()
	}
}

// The same race on the real clock, inside a synctest bubble: the input lands
// at the very instant the ring timer fires.
func TestTimeoutRacingInputRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &emitter.Recorder{}
		eng, err := call.New(call.Config{Emitter: rec})
		require.NoError(t, err)
		defer eng.Close()
		ctx := context.Background()
		outcomes := map[string]int{}
		for id := int64(1); id <= 200; id++ {
			c, err := eng.Create(ctx, details(id))
			require.NoError(t, err)
			_, err = c.Fire(ctx, fsm.Ring)
			require.NoError(t, err)
			time.Sleep(fsm.DefaultTimeout) // fake time: the timer is due now
			_, _ = c.Fire(ctx, fsm.Accept)
			synctest.Wait()
			got := names(rec.Events(), id)
			require.Len(t, got, 3, "call %d: %v", id, got)
			outcomes[got[2]]++
			if got[2] == "accepted" {
				_, err = c.Fire(ctx, fsm.Cancel)
				require.NoError(t, err)
			}
		}
		assert.Equal(t, 200, outcomes["missed"]+outcomes["accepted"], outcomes)
	})
}

// Many goroutines drive many calls, several goroutines per call with random
// triggers: every call's events form a legal path of the spec, in order,
// ending exactly once.
func TestConcurrentUse(t *testing.T) {
	rec := &emitter.Recorder{}
	r := newRig(t, call.Config{Emitter: rec})
	ctx := context.Background()
	const calls, perCall = 200, 4
	triggers := []fsm.Trigger{fsm.Ring, fsm.Accept, fsm.Start, fsm.End, fsm.Cancel, fsm.Decline, fsm.BusySignal, fsm.NetFailure}
	var wg sync.WaitGroup
	for id := int64(1); id <= calls; id++ {
		_, err := r.eng.Create(ctx, details(id))
		require.NoError(t, err)
		for g := range perCall {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(id), uint64(g)))
				for range 50 {
					tr := triggers[rnd.IntN(len(triggers))]
					_, _ = r.eng.Apply(ctx, id, call.Input{Trigger: tr, Participant: participantFor(tr)})
				}
			})
		}
	}
	wg.Go(func() {
		for range 40 {
			r.clock.Advance(time.Second)
		}
	})
	wg.Wait()
	r.clock.Advance(time.Hour)

	spec := r.eng.Spec()
	byCall := map[int64][]event.Event{}
	for _, ev := range rec.Events() {
		byCall[ev.CallID] = append(byCall[ev.CallID], ev)
	}
	require.Len(t, byCall, calls)
	for id, evs := range byCall {
		state, _ := spec.StateOf(evs[0].Event)
		require.Equal(t, fsm.Initiated, state, "call %d", id)
		for _, ev := range evs[1:] {
			next, _ := spec.StateOf(ev.Event)
			legal := false
			for _, tr := range spec.Allowed(state) {
				if to, _ := spec.Next(state, tr); to == next {
					legal = true
				}
			}
			require.True(t, legal, "call %d: %s -> %s", id, state, next)
			state = next
		}
		require.True(t, spec.Terminal(state), "call %d ended in %s", id, state)
	}
	assert.Equal(t, 0, r.eng.Len())
}

func TestCloseStopsTimers(t *testing.T) {
	r := newRig(t, call.Config{})
	ctx := context.Background()
	c, err := r.eng.Create(ctx, details(1))
	require.NoError(t, err)
	require.NoError(t, r.eng.Close())
	require.NoError(t, r.eng.Close(), "Close is idempotent")
	r.clock.Advance(time.Hour)
	assert.Equal(t, fsm.Initiated, c.State())
	assert.Len(t, r.rec.Events(), 1)
	_, err = r.eng.Create(ctx, details(2))
	assert.ErrorIs(t, err, call.ErrClosed)
	_, err = c.Fire(ctx, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrClosed)
}

func TestRange(t *testing.T) {
	r := newRig(t, call.Config{})
	for id := int64(1); id <= 10; id++ {
		_, err := r.eng.Create(context.Background(), details(id))
		require.NoError(t, err)
	}
	seen := 0
	r.eng.Range(func(c *call.Call) bool { seen++; return true })
	assert.Equal(t, 10, seen)
	seen = 0
	r.eng.Range(func(c *call.Call) bool { seen++; return seen < 3 })
	assert.Equal(t, 3, seen)
}
