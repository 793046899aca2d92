package call

import (
	"fmt"
	"iter"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Restore puts a call back in the registry in state st, entered at
// enteredAt, without emitting anything: the way to rebuild live calls from
// an event log after a restart (see Rebuild). If st has a timeout, its timer
// is armed for enteredAt + timeout, so a call that had rung for 20 s of 30
// times out 10 s later; a deadline already past fires at once, with the
// deadline as its event's timestamp.
func (e *Engine) Restore(d Details, st fsm.State, enteredAt time.Time) (*Call, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if d.CallID <= 0 {
		return nil, &InputError{CallID: d.CallID, Field: "call_id", Reason: "must be a positive integer"}
	}
	if !e.spec.Has(st) || e.spec.Terminal(st) {
		return nil, &InputError{CallID: d.CallID, Field: "state", Reason: fmt.Sprintf("%q is not a live state of lifecycle %q", st, e.spec.Name())}
	}
	c := &Call{e: e, details: d, state: st}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := e.register(c); err != nil {
		return nil, err
	}
	e.live.Add(1)
	if timeout, _, ok := e.spec.Timeout(st); ok {
		deadline := enteredAt.Add(timeout)
		c.armAt(deadline, max(deadline.Sub(e.clock.Now()), 0))
	}
	return c, nil
}

// Rebuild restores the live calls of an event log. It reads events in log
// order, follows each call_id to its last event, and restores every call
// that has not ended, in the state its last event entered, as entered at
// that event's timestamp. A call that ended within the grace period keeps
// answering ErrCallEnded. Memory follows the calls live at each point of
// the log, not the log's length. It returns how many calls it restored, or
// the first error (of events, or an event the lifecycle does not know).
func (e *Engine) Rebuild(events iter.Seq2[event.Event, error]) (int, error) {
	type pending struct {
		d     Details
		state fsm.State
		at    int64
	}
	live := make(map[int64]*pending)
	n := 0
	for ev, err := range events {
		if err != nil {
			return 0, err
		}
		n++
		st, ok := e.spec.StateOf(ev.Event)
		if !ok {
			return 0, fmt.Errorf("call: rebuild: event %d (call %d): %q is not an event of lifecycle %q", n, ev.CallID, ev.Event, e.spec.Name())
		}
		p := live[ev.CallID]
		if p == nil || st == e.spec.Initial() {
			p = &pending{d: DetailsOf(&ev)}
			live[ev.CallID] = p
		}
		p.state, p.at = st, ev.Timestamp
		if e.spec.Terminal(st) {
			delete(live, ev.CallID)
			e.remember(ev.CallID, st, time.Unix(ev.Timestamp, 0))
		}
	}
	restored := 0
	for _, p := range live {
		if _, err := e.Restore(p.d, p.state, time.Unix(p.at, 0)); err != nil {
			return restored, err
		}
		restored++
	}
	return restored, nil
}

// remember records that a call ended at the given time, for the grace
// period, unless that is already over.
func (e *Engine) remember(id int64, st fsm.State, at time.Time) {
	if e.clock.Now().Sub(at) > e.grace {
		return
	}
	sh := e.shard(id)
	sh.mu.Lock()
	sh.ended[id] = tombstone{state: st, at: at.UnixNano()}
	sh.mu.Unlock()
}
