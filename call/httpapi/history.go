package httpapi

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/fsm"
)

// readBatch is how many records the history and the SSE streams read from
// the log at a time.
const readBatch = 256

// maxCallEvents bounds the events kept for one call (a lifecycle with a
// cycle could grow without end); past it the oldest are dropped.
const maxCallEvents = 1000

// history is the state and events of live and recently ended calls, built
// by tailing the event log. Memory follows the live calls plus at most
// maxEnded ended ones, each kept for grace after its last event. A call's
// events share its details, so a call is stored as its first event and,
// per event, only what changes: name, participant and timestamp.
type history struct {
	spec     *fsm.Spec
	grace    time.Duration
	maxEnded int

	mu        sync.Mutex
	calls     map[int64]*record
	ended     []endedRef // ended calls in the order they ended; head is the oldest
	head      int
	nEnded    int    // ended records in calls
	gen       uint64 // last record generation given out
	seq       uint64 // last log record applied
	target    uint64 // the log's last record when tailing began
	replayed  bool   // seq has reached target
	following bool   // tail is running
	stopped   bool   // tail has returned
	changed   chan struct{}
}

// record is one call's history.
type record struct {
	base    event.Event // the call's first event: its details
	steps   []step
	state   fsm.State
	live    bool
	endedAt time.Time // the terminal event's timestamp
	gen     uint64    // tells a reused call_id's records apart
}

// step is what one event adds to its call's details.
type step struct {
	name        string
	participant event.Participant
	ts          int64
}

type endedRef struct {
	id  int64
	gen uint64
}

// snapshot is a copy of a record, for answering outside the lock.
type snapshot struct {
	base  event.Event
	steps []step
	state fsm.State
	live  bool
}

func newHistory(spec *fsm.Spec, grace time.Duration, maxEnded int) *history {
	return &history{spec: spec, grace: grace, maxEnded: maxEnded,
		calls: make(map[int64]*record), changed: make(chan struct{})}
}

// errStopped is returned by waitFor when the history no longer follows the
// log.
var errStopped = errors.New("httpapi: history stopped")

// tail replays the log from the first record not yet applied, then follows
// it, until ctx is done or the log fails. onEvent is called with each
// record's event name, in log order, from tail's goroutine.
func (h *history) tail(ctx context.Context, log eventlog.Log, now func() time.Time, onEvent func(string)) error {
	h.mu.Lock()
	h.following = true
	h.target = log.LastSeq()
	h.replayed = h.seq >= h.target
	next := h.seq + 1
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.following, h.stopped = false, true
		h.broadcast()
		h.mu.Unlock()
	}()
	for caughtUp := false; ; {
		// A short batch was the log's end: wait for more rather than read
		// again at once (for a JetStream log, a read past what its tail
		// has seen is a request to the server).
		if caughtUp {
			if err := log.Wait(ctx, next-1); err != nil {
				return err
			}
		}
		recs, err := log.Read(ctx, next, readBatch)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			h.mu.Lock()
			h.replayed = true // the log ended sooner than target: it holds no more
			h.mu.Unlock()
			caughtUp = true
			continue
		}
		for i := range recs {
			onEvent(recs[i].Event.Event)
		}
		h.apply(recs, now())
		next = recs[len(recs)-1].Seq + 1
		caughtUp = len(recs) < readBatch
	}
}

// apply adds a batch of records and wakes waitFor.
func (h *history) apply(recs []eventlog.Record, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range recs {
		h.add(&recs[i].Event)
	}
	h.seq = recs[len(recs)-1].Seq
	if h.seq >= h.target {
		h.replayed = true
	}
	h.evict(now)
	h.broadcast()
}

// add applies one event. h.mu is held.
func (h *history) add(ev *event.Event) {
	st, known := h.spec.StateOf(ev.Event)
	name := ev.Event
	if known {
		name = h.spec.EventName(st) // the spec's string, shared by every step
	} else {
		st = fsm.State(ev.Event) // another lifecycle's event: keep its name
	}
	rc := h.calls[ev.CallID]
	if rc == nil || !rc.live || (known && st == h.spec.Initial()) {
		// A new call, or a new call reusing the id of an ended one.
		if rc != nil && !rc.live {
			h.nEnded--
		}
		h.gen++
		rc = &record{base: *ev, live: true, gen: h.gen}
		h.calls[ev.CallID] = rc
	}
	if len(rc.steps) == maxCallEvents {
		rc.steps = slices.Delete(rc.steps, 0, 1)
	}
	rc.steps = append(rc.steps, step{name: name, participant: ev.Participant, ts: ev.Timestamp})
	rc.state = st
	if known && h.spec.Terminal(st) {
		rc.live, rc.endedAt = false, time.Unix(ev.Timestamp, 0)
		h.nEnded++
		h.ended = append(h.ended, endedRef{id: ev.CallID, gen: rc.gen})
	}
}

// evict forgets the ended calls whose grace is over, oldest first, and the
// oldest beyond maxEnded. h.mu is held.
//
// Calls are looked at in the order they ended in the log; a call whose
// timestamp is earlier than an older one's (a timeout fired late, after a
// restart) waits behind it, but lookup never answers for it past its grace.
func (h *history) evict(now time.Time) {
	for h.head < len(h.ended) {
		e := h.ended[h.head]
		if rc := h.calls[e.id]; rc != nil && rc.gen == e.gen {
			if h.nEnded <= h.maxEnded && !expired(rc, now, h.grace) {
				break
			}
			delete(h.calls, e.id)
			h.nEnded--
		}
		h.ended[h.head] = endedRef{}
		h.head++
	}
	if h.head >= 1024 && 2*h.head >= len(h.ended) {
		n := copy(h.ended, h.ended[h.head:])
		clear(h.ended[n:])
		h.ended, h.head = h.ended[:n], 0
	}
}

// expired reports whether rc is an ended call whose grace is over. As the
// engine's, it is over once more than grace has passed since the call ended.
func expired(rc *record, now time.Time, grace time.Duration) bool {
	return !rc.live && now.Sub(rc.endedAt) > grace
}

// broadcast wakes every waitFor. h.mu is held.
func (h *history) broadcast() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// waitFor returns once the history has applied the log up to seq, or with
// an error when ctx or closed is done or the history stopped first.
func (h *history) waitFor(ctx, closed context.Context, seq uint64) error {
	for {
		h.mu.Lock()
		applied, stopped, ch := h.seq, h.stopped, h.changed
		h.mu.Unlock()
		switch {
		case applied >= seq:
			return nil
		case stopped:
			return errStopped
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-closed.Done():
			return errStopped
		}
	}
}

// lookup returns a live call's history, or an ended one's within its grace.
func (h *history) lookup(id int64, now time.Time) (snapshot, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.evict(now)
	rc := h.calls[id]
	if rc == nil || expired(rc, now, h.grace) {
		return snapshot{}, false
	}
	return snapshot{base: rc.base, steps: slices.Clone(rc.steps), state: rc.state, live: rc.live}, true
}

// live returns up to limit live calls with call_id > after, by call_id,
// and whether there are more. The history keeps no order: it sorts the
// live calls past after on each call.
func (h *history) live(after int64, limit int) (calls []listedCall, more bool) {
	h.mu.Lock()
	for id, rc := range h.calls {
		if rc.live && id > after {
			calls = append(calls, listedCall{CallID: id, State: rc.state, SessionID: rc.base.SessionID})
		}
	}
	h.mu.Unlock()
	slices.SortFunc(calls, func(x, y listedCall) int { return cmp.Compare(x.CallID, y.CallID) })
	if len(calls) > limit {
		return calls[:limit], true
	}
	if calls == nil {
		calls = []listedCall{}
	}
	return calls, false
}

// isReady reports whether the history follows the log and has replayed it.
func (h *history) isReady() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.following && h.replayed
}

// size returns how many calls the history holds, live and ended.
func (h *history) size() (live, ended int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls) - h.nEnded, h.nEnded
}

// applied returns the last log record applied.
func (h *history) applied() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}
