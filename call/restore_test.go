package call_test

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

func seqOf(evs []event.Event) iter.Seq2[event.Event, error] {
	return func(yield func(event.Event, error) bool) {
		for _, ev := range evs {
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// A call that rang for 20 s before a crash times out 10 s after the
// restart, with its original deadline as timestamp; nothing is emitted by
// the restore itself.
func TestRestoreArmsTheRemainingTimeout(t *testing.T) {
	r := newRig(t, call.Config{})
	entered := r.clock.Now().Add(-20 * time.Second)
	c, err := r.eng.Restore(details(5), fsm.Ringing, entered)
	require.NoError(t, err)
	assert.Empty(t, r.rec.Events(), "restoring emits nothing")
	assert.Equal(t, 1, r.eng.Len())

	r.clock.Advance(10*time.Second - time.Nanosecond)
	assert.Equal(t, fsm.Ringing, c.State())
	r.clock.Advance(time.Nanosecond)
	assert.Equal(t, fsm.Missed, c.State())
	evs := r.rec.Events()
	require.Len(t, evs, 1)
	assert.Equal(t, entered.Add(30*time.Second).Unix(), evs[0].Timestamp)
	assert.Equal(t, uint64(1), r.eng.TimeoutsFired())
}

// A deadline that passed while the server was down fires at once, with the
// deadline as its timestamp.
func TestRestorePastDeadlineFiresAtOnce(t *testing.T) {
	r := newRig(t, call.Config{})
	entered := r.clock.Now().Add(-5 * time.Minute)
	c, err := r.eng.Restore(details(6), fsm.Accepted, entered)
	require.NoError(t, err)
	r.clock.Advance(0)
	assert.Equal(t, fsm.NetworkFailure, c.State())
	evs := r.rec.Events()
	require.Len(t, evs, 1)
	assert.Equal(t, entered.Add(30*time.Second).Unix(), evs[0].Timestamp)
	assert.Equal(t, event.User, evs[0].Participant)
}

func TestRestoreRejects(t *testing.T) {
	r := newRig(t, call.Config{})
	_, err := r.eng.Restore(details(1), fsm.Missed, r.clock.Now())
	assert.ErrorIs(t, err, call.ErrInvalidInput)
	_, err = r.eng.Restore(details(1), "limbo", r.clock.Now())
	assert.ErrorIs(t, err, call.ErrInvalidInput)
	_, err = r.eng.Restore(details(1), fsm.Started, r.clock.Now())
	require.NoError(t, err)
	_, err = r.eng.Restore(details(1), fsm.Started, r.clock.Now())
	assert.ErrorIs(t, err, call.ErrCallExists)
}

// Rebuild from the events one engine emitted gives a second engine the same
// live calls, in the same states, with the same deadlines; ended calls stay
// ended for the grace period; replaying emits nothing.
func TestRebuildFromTheLog(t *testing.T) {
	a := newRig(t, call.Config{})
	ctx := context.Background()
	paths := map[int64][]string{
		1: {},                                 // initiated
		2: {"ring"},                           // ringing
		3: {"ring", "accept"},                 // accepted
		4: {"ring", "start"},                  // started
		5: {"ring", "start", "end"},           // successful
		6: {"busy"},                           // busy
		7: {"ring", "accept", "start", "end"}, // successful, id reused below
	}
	for id := int64(1); id <= 7; id++ {
		c, err := a.eng.Create(ctx, details(id))
		require.NoError(t, err)
		a.clock.Advance(3 * time.Second)
		drive(t, a, c, paths[id])
	}
	c7, err := a.eng.Create(ctx, details(7))
	require.NoError(t, err)
	drive(t, a, c7, []string{"ring"})
	log := a.rec.Events()

	b := newRig(t, call.Config{})
	b.clock.AdvanceTo(a.clock.Now())
	n, err := b.eng.Rebuild(seqOf(log))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	assert.Empty(t, b.rec.Events())
	for id, want := range map[int64]fsm.State{1: fsm.Initiated, 2: fsm.Ringing, 3: fsm.Accepted, 4: fsm.Started, 7: fsm.Ringing} {
		c, err := b.eng.Lookup(id)
		require.NoError(t, err, id)
		assert.Equal(t, want, c.State(), "call %d", id)
		ca, _ := a.eng.Lookup(id)
		da, oka := ca.Deadline()
		db, okb := c.Deadline()
		assert.Equal(t, oka, okb, "call %d armed", id)
		// Timestamps are whole seconds, so deadlines agree to the second.
		assert.Equal(t, da.Unix(), db.Unix(), "call %d deadline", id)
	}
	_, err = b.eng.Fire(ctx, 5, fsm.End)
	assert.ErrorIs(t, err, call.ErrCallEnded)
	_, err = b.eng.Fire(ctx, 6, fsm.Ring)
	assert.ErrorIs(t, err, call.ErrCallEnded)

	// The timeouts fire in b as they would have in a.
	a.clock.Advance(time.Minute)
	b.clock.Advance(time.Minute)
	assert.Equal(t, names(a.rec.Events()[len(log):], 2), names(b.rec.Events(), 2))
	assert.Equal(t, names(a.rec.Events()[len(log):], 7), names(b.rec.Events(), 7))
	assert.Equal(t, a.eng.Len(), b.eng.Len())
}

func TestRebuildUnknownEvent(t *testing.T) {
	r := newRig(t, call.Config{})
	_, err := r.eng.Rebuild(seqOf([]event.Event{{Event: "popin_outgoing_call_teleported", CallID: 3}}))
	assert.ErrorContains(t, err, `event 1 (call 3): "popin_outgoing_call_teleported" is not an event`)
}
