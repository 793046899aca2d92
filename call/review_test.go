package call_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// A Create that races Close neither emits nor arms a timer after Close has
// returned: Close runs inside Create's window here, from the session-id hook.
func TestCreateRacingClose(t *testing.T) {
	var eng *call.Engine
	rec := &emitter.Recorder{}
	eng, err := call.New(call.Config{Emitter: rec, NewSessionID: func() string {
		_ = eng.Close()
		return "s"
	}})
	require.NoError(t, err)
	_, err = eng.Create(context.Background(), details(1))
	assert.ErrorIs(t, err, call.ErrClosed)
	assert.Empty(t, rec.Events())
	assert.Equal(t, 0, eng.Len())
}

// A restored call's deadline has no monotonic reading; if the wall clock
// steps back before it fires, the timeout still fires (re-armed), never
// leaving the call ringing for ever.
func TestRestoredTimeoutSurvivesWallClockStepBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &emitter.Recorder{}
		clock := &steppedClock{}
		eng, err := call.New(call.Config{Emitter: rec, Clock: clock})
		require.NoError(t, err)
		defer eng.Close()
		c, err := eng.Restore(details(1), fsm.Ringing, time.Unix(time.Now().Unix(), 0))
		require.NoError(t, err)
		clock.back.Store(int64(2 * time.Second)) // the wall clock steps back 2 s
		time.Sleep(time.Hour)                    // fake time in the bubble
		assert.Equal(t, fsm.Missed, c.State())
		assert.Equal(t, uint64(1), eng.TimeoutsFired())
	})
}

// steppedClock is the real clock with the wall reading stepped back by back
// (and no monotonic reading, as after time.Unix).
type steppedClock struct{ back atomic.Int64 }

func (s *steppedClock) Now() time.Time {
	return time.Unix(0, time.Now().Add(-time.Duration(s.back.Load())).UnixNano())
}

func (s *steppedClock) AfterFunc(d time.Duration, f func()) timeout.Timer {
	return time.AfterFunc(d, f)
}

// sameShard returns n call ids that the engine keeps in one shard (its
// registry hashes ids with the golden-ratio multiplier into 64 shards).
func sameShard(n int) []int64 {
	shard := func(id int64) uint64 { return (uint64(id) * 0x9E3779B97F4A7C15) >> 58 }
	ids := []int64{2}
	for id := int64(3); len(ids) < n; id++ {
		if shard(id) == shard(2) {
			ids = append(ids, id)
		}
	}
	return ids
}

// Tombstones remembered by Rebuild keep their grace even when a restored
// call then times out with a deadline long past, and another call ends.
func TestRebuiltTombstonesKeepTheirGrace(t *testing.T) {
	r := newRig(t, call.Config{Grace: time.Minute})
	ids := sameShard(3)
	now := r.clock.Now()
	evs := []event.Event{
		{Event: "popin_outgoing_call_initiated", CallID: ids[0], SessionID: "s", Timestamp: now.Add(-20 * time.Second).Unix()},
		{Event: "popin_outgoing_call_busy", CallID: ids[0], SessionID: "s", Timestamp: now.Add(-10 * time.Second).Unix()},
		{Event: "popin_outgoing_call_initiated", CallID: ids[1], SessionID: "s", Timestamp: now.Add(-10 * time.Minute).Unix()},
		{Event: "popin_outgoing_call_ringing", CallID: ids[1], SessionID: "s", Timestamp: now.Add(-10 * time.Minute).Unix()},
	}
	n, err := r.eng.Rebuild(seqOf(evs))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	r.clock.Advance(0) // the restored call's ring timeout, long past, fires now
	c, err := r.eng.Create(context.Background(), details(ids[2]))
	require.NoError(t, err)
	_, err = c.Fire(context.Background(), fsm.Cancel)
	require.NoError(t, err)

	_, err = r.eng.Fire(context.Background(), ids[0], fsm.Ring)
	assert.ErrorIs(t, err, call.ErrCallEnded, "ended 10 s ago with a 1 min grace")
	_, err = r.eng.Fire(context.Background(), ids[1], fsm.Ring)
	assert.ErrorIs(t, err, call.ErrCallEnded, "the restored call ended now, by its timeout")
}
