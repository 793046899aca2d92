package call

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// Call is one call of an Engine. Its methods are safe for concurrent use.
// A Call stays valid after it ends: State, Done and Err then tell how.
type Call struct {
	e       *Engine
	details Details

	mu       sync.Mutex
	state    fsm.State     // between inputs a call holds its state, not a machine
	seq      uint32        // transitions applied
	timer    timeout.Timer // the call's one timer, made on first use, re-armed with Reset
	armed    bool          // timer is armed for the current state
	armedSeq uint32        // seq the timer was armed for
	deadline time.Time     // the armed timeout's deadline: the event's timestamp
	done     chan struct{} // made on first Done()
	ended    bool
	gone     bool // never created: its initial event was not emitted
}

// ID returns the call_id.
func (c *Call) ID() int64 { return c.details.CallID }

// Details returns what the call was created with (its session_id filled in).
func (c *Call) Details() Details { return c.details }

// State returns the call's current state.
func (c *Call) State() fsm.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Deadline returns when the current state's timeout fires, if one is armed.
func (c *Call) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, c.armed
}

// Done returns a channel closed when the call reaches a terminal state, in
// the manner of context.Context.
func (c *Call) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.ended {
			close(c.done)
		}
	}
	return c.done
}

// Err returns nil while the call is live and, once Done is closed, an
// *EndedError (ErrCallEnded) naming the terminal state.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		return nil
	}
	return &EndedError{CallID: c.details.CallID, State: c.state}
}

// Fire applies trigger to the call; see Engine.Apply.
func (c *Call) Fire(ctx context.Context, trigger fsm.Trigger) (fsm.State, error) {
	return c.Apply(ctx, Input{Trigger: trigger})
}

// Apply applies an input to the call and returns its state afterwards; see
// Engine.Apply for the errors.
func (c *Call) Apply(ctx context.Context, in Input) (fsm.State, error) {
	if in.Trigger == fsm.Timeout {
		return c.State(), &InputError{CallID: c.details.CallID, Field: "trigger", Reason: "timeout is fired by the engine's clock, not by callers"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apply(ctx, in, c.e.clock.Now())
}

// apply runs one transition with c.mu held. now is the transition's time
// (a timeout's deadline).
func (c *Call) apply(ctx context.Context, in Input, now time.Time) (fsm.State, error) {
	e, id := c.e, c.details.CallID
	switch {
	case c.gone:
		return "", &CallError{CallID: id, Err: ErrUnknownCall}
	case c.ended:
		return c.state, &EndedError{CallID: id, State: c.state}
	case e.closed.Load():
		return c.state, ErrClosed
	}
	from := c.state
	to, ev, err := Step(ctx, e.spec, &c.details, from, in, now)
	if err != nil {
		return from, err
	}
	if err := e.emit.Emit(ctx, ev); err != nil {
		return from, &EmitError{CallID: id, State: from, Event: ev.Event, Err: err}
	}
	c.state = to
	c.seq++
	c.disarm()
	if e.spec.Terminal(to) {
		c.end()
	} else {
		c.arm(now)
	}
	return to, nil
}

// arm starts the current state's timer, if it has one. c.mu is held.
func (c *Call) arm(now time.Time) {
	d, _, ok := c.e.spec.Timeout(c.state)
	if !ok {
		return
	}
	c.armAt(now.Add(d), d)
}

// armAt arms the call's timer to fire after the given time, for a timeout
// whose deadline (and event timestamp) is deadline. c.mu is held.
func (c *Call) armAt(deadline time.Time, after time.Duration) {
	c.armed, c.armedSeq, c.deadline = true, c.seq, deadline
	if c.timer == nil {
		c.timer = c.e.clock.AfterFunc(after, c.onTimer)
		return
	}
	c.timer.Reset(after)
}

// disarm stops the current state's timer. c.mu is held.
func (c *Call) disarm() {
	if c.armed {
		c.timer.Stop()
		c.armed = false
		c.deadline = time.Time{}
	}
}

// onTimer runs when the call's timer fires. The firing may be stale: the
// call may have moved on (its state changed, or its timer was stopped or
// re-armed for a later deadline) while this function waited for the lock.
// Only a firing for the armed state at or after its deadline applies the
// timeout, so a timeout racing an input yields exactly one transition.
func (c *Call) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed || c.armedSeq != c.seq || c.ended || c.gone || c.e.closed.Load() {
		return
	}
	if now := c.e.clock.Now(); now.Before(c.deadline) {
		// Early: a firing overtaken by a Reset, or a wall clock stepped
		// back under a deadline without a monotonic reading (a restored
		// call's). Re-arm for the deadline, so the timeout still fires.
		c.timer.Reset(c.deadline.Sub(now))
		return
	}
	deadline := c.deadline
	c.armed = false
	_, err := c.apply(context.Background(), Input{Trigger: fsm.Timeout}, deadline)
	if err == nil {
		c.e.timeouts.Add(1)
	} else {
		c.e.onError(c.details.CallID, err)
		if errors.Is(err, ErrEmit) {
			c.armAt(deadline, c.e.retryDelay)
		}
	}
}

// end releases a call that reached a terminal state. c.mu is held.
func (c *Call) end() {
	c.ended = true
	c.timer = nil // the call no longer needs it; let it be collected
	if c.done != nil {
		close(c.done)
	}
	c.e.ended(c)
}
