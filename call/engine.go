// Package call runs calls: it joins a lifecycle (fsm), a clock (timeout)
// and a sink for events (emitter) into an Engine, the registry of live calls
// a signalling server embeds.
//
// Every transition is made by a looplab/fsm machine built from the engine's
// Spec, set to the call's state. Inputs
// for one call are applied one at a time, and each transition emits its
// event (the seed's payload) before the next input is applied, so a call's
// events reach the emitter in transition order. Entering a state with a
// timeout arms a timer on the clock; leaving it disarms it; a timeout that
// races an input yields exactly one transition. A transition commits only
// when its event is emitted: if the emitter fails, the call stays where it
// was and the caller gets an *EmitError.
//
// Ended calls leave the registry, so memory follows live calls; for a grace
// period an input for an ended call still gets *EndedError naming how it
// ended.
package call

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// DefaultGrace is how long, by default, an ended call's id keeps answering
// ErrCallEnded before it becomes unknown.
const DefaultGrace = time.Minute

// DefaultRetryDelay is how long, by default, the engine waits before it
// fires again a timeout whose event the emitter refused.
const DefaultRetryDelay = time.Second

// Config configures an Engine. The zero value is the Popin outgoing-call
// lifecycle on the real clock, discarding events.
type Config struct {
	// Spec is the lifecycle. Nil means fsm.Outgoing().
	Spec *fsm.Spec
	// Clock drives timeouts and timestamps. Nil means timeout.Real{}.
	Clock timeout.Clock
	// Emitter receives every event, in each call's transition order, from
	// the goroutine that applied the transition (a timeout's from the
	// clock's). It must not call back into the engine for the same call
	// synchronously; wrap it in emitter.NewAsync to decouple it. Nil means
	// emitter.Discard.
	Emitter emitter.Emitter
	// Grace is how long an ended call's id answers *EndedError. Zero means
	// DefaultGrace; negative is an error.
	Grace time.Duration
	// RetryDelay is how long the engine waits to fire again a timeout whose
	// event the emitter refused. Zero means DefaultRetryDelay.
	RetryDelay time.Duration
	// OnError receives the errors no caller is waiting for: a timeout's
	// event the emitter refused (the engine retries after RetryDelay). Nil
	// means they are logged with slog.Default().
	OnError func(callID int64, err error)
	// NewSessionID makes a session_id for a call created without one. Nil
	// means a random UUID (github.com/google/uuid).
	NewSessionID func() string
}

// Details are what the caller knows of a call when it creates it: every
// field of the event payload but the event name, the participant and the
// timestamp.
type Details struct {
	CallID     int64
	SessionID  string // empty: the engine makes one (Config.NewSessionID)
	UserID     int64
	ScheduleID *int64 // nullable
	Agent      event.AgentInfo
	User       event.UserInfo
	Meta       event.Meta
}

// Input is one input to a call: a trigger, and for a trigger that enters a
// participant state (network_failure), the participant.
type Input struct {
	Trigger     fsm.Trigger
	Participant event.Participant
}

const shardCount = 64

// Engine is the registry of live calls. It is safe for concurrent use by
// many goroutines. Make one with New; stop its timers with Close.
type Engine struct {
	spec       *fsm.Spec
	clock      timeout.Clock
	emit       emitter.Emitter
	grace      time.Duration
	retryDelay time.Duration
	onError    func(int64, error)
	newSession func() string

	closed   atomic.Bool
	live     atomic.Int64
	timeouts atomic.Uint64
	shards   [shardCount]shard
}

// shard is one lock's worth of the registry: live calls, and the calls
// that ended within the grace period in two generations that rotate every
// grace period, so that no timer is needed to forget them.
type shard struct {
	mu       sync.Mutex
	live     map[int64]*Call
	ended    map[int64]tombstone
	previous map[int64]tombstone
	rotateAt int64 // unix nanoseconds
}

type tombstone struct {
	state fsm.State
	at    int64 // unix nanoseconds
}

// New returns an engine configured by cfg, or an error naming the bad field.
func New(cfg Config) (*Engine, error) {
	e := &Engine{
		spec: cfg.Spec, clock: cfg.Clock, emit: cfg.Emitter, grace: cfg.Grace,
		retryDelay: cfg.RetryDelay, onError: cfg.OnError, newSession: cfg.NewSessionID,
	}
	if e.spec == nil {
		e.spec = fsm.Outgoing()
	}
	if e.clock == nil {
		e.clock = timeout.Real{}
	}
	if e.emit == nil {
		e.emit = emitter.Discard
	}
	switch {
	case e.grace < 0:
		return nil, errors.New("call: Config.Grace is negative")
	case e.grace == 0:
		e.grace = DefaultGrace
	}
	switch {
	case e.retryDelay < 0:
		return nil, errors.New("call: Config.RetryDelay is negative")
	case e.retryDelay == 0:
		e.retryDelay = DefaultRetryDelay
	}
	if e.onError == nil {
		e.onError = func(id int64, err error) {
			slog.Default().Error("callfsm: transition failed", "call_id", id, "err", err)
		}
	}
	if e.newSession == nil {
		e.newSession = uuid.NewString
	}
	for i := range e.shards {
		e.shards[i].live = make(map[int64]*Call)
		e.shards[i].ended = make(map[int64]tombstone)
	}
	return e, nil
}

// Spec returns the engine's lifecycle.
func (e *Engine) Spec() *fsm.Spec { return e.spec }

// Clock returns the engine's clock.
func (e *Engine) Clock() timeout.Clock { return e.clock }

// TimeoutsFired returns how many timeouts have fired and applied a
// transition since the engine was made.
func (e *Engine) TimeoutsFired() uint64 { return e.timeouts.Load() }

// Len returns the number of live calls.
func (e *Engine) Len() int { return int(e.live.Load()) }

func (e *Engine) shard(id int64) *shard {
	return &e.shards[(uint64(id)*0x9E3779B97F4A7C15)>>58]
}

// Create starts a call in the lifecycle's initial state and emits that
// state's event. The call_id must not belong to a live call (*CallError,
// ErrCallExists); an ended call's id may be reused at once.
func (e *Engine) Create(ctx context.Context, d Details) (*Call, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if d.SessionID == "" {
		d.SessionID = e.newSession()
	}
	// Own the nullable fields: events share them with every sink.
	if d.ScheduleID != nil {
		v := *d.ScheduleID
		d.ScheduleID = &v
	}
	if d.User.PhoneNumber != nil {
		v := *d.User.PhoneNumber
		d.User.PhoneNumber = &v
	}
	c := &Call{e: e, details: d, state: e.spec.Initial()}
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := e.register(c); err != nil {
		return nil, err
	}

	now := e.clock.Now()
	ev := NewEvent(e.spec, &c.details, e.spec.Initial(), "", now.Unix())
	if err := e.emit.Emit(ctx, ev); err != nil {
		e.drop(c)
		return nil, &EmitError{CallID: d.CallID, Event: ev.Event, Err: err}
	}
	e.live.Add(1)
	c.arm(now)
	return c, nil
}

// Start creates a call, as Create does, and returns its details (its
// session_id filled in): what callers that drive calls by id need, such as
// the HTTP API, which drives a cluster.Engine the same way.
func (e *Engine) Start(ctx context.Context, d Details) (Details, error) {
	c, err := e.Create(ctx, d)
	if err != nil {
		return d, err
	}
	return c.Details(), nil
}

// Lookup returns the live call with that id. For an unknown or ended call
// it returns *CallError (ErrUnknownCall) or *EndedError (ErrCallEnded).
func (e *Engine) Lookup(id int64) (*Call, error) {
	sh := e.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c, ok := sh.live[id]; ok {
		return c, nil
	}
	now := e.clock.Now().UnixNano()
	for _, m := range []map[int64]tombstone{sh.ended, sh.previous} {
		if t, ok := m[id]; ok && now-t.at <= int64(e.grace) {
			return nil, &EndedError{CallID: id, State: t.state}
		}
	}
	return nil, &CallError{CallID: id, Err: ErrUnknownCall}
}

// Fire applies trigger to the call with that id and returns the state the
// call is in afterwards.
func (e *Engine) Fire(ctx context.Context, id int64, trigger fsm.Trigger) (fsm.State, error) {
	return e.Apply(ctx, id, Input{Trigger: trigger})
}

// Apply applies an input to the call with that id and returns the state the
// call is in afterwards. Errors: *CallError (ErrUnknownCall),
// *EndedError (ErrCallEnded), *TransitionError (ErrIllegalTransition),
// *InputError (ErrInvalidInput), *EmitError (ErrEmit), ErrClosed.
func (e *Engine) Apply(ctx context.Context, id int64, in Input) (fsm.State, error) {
	c, err := e.Lookup(id)
	if err != nil {
		var ended *EndedError
		if errors.As(err, &ended) {
			return ended.State, err
		}
		return "", err
	}
	return c.Apply(ctx, in)
}

// Range calls f for each live call, in no particular order, until f returns
// false. Calls created or ended meanwhile may or may not be seen.
func (e *Engine) Range(f func(*Call) bool) {
	var batch []*Call
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for _, c := range sh.live {
			batch = append(batch, c)
		}
		sh.mu.Unlock()
		for _, c := range batch {
			if !f(c) {
				return
			}
		}
	}
}

// Close stops every armed timer and makes further inputs fail with
// ErrClosed. Live calls stay where they are and no event is emitted. It
// does not close the emitter, which the caller owns. Close is idempotent.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.Range(func(c *Call) bool {
		c.mu.Lock()
		c.disarm()
		c.mu.Unlock()
		return true
	})
	return nil
}

// register puts a new call in the registry, unless its call_id is live
// (*CallError, ErrCallExists) or the engine is closed (ErrClosed). c.mu is
// held, so inputs that find the call wait until its creator is done.
func (e *Engine) register(c *Call) error {
	id := c.details.CallID
	sh := e.shard(id)
	sh.mu.Lock()
	if _, live := sh.live[id]; live {
		sh.mu.Unlock()
		return &CallError{CallID: id, Err: ErrCallExists}
	}
	sh.live[id] = c
	sh.mu.Unlock()
	if e.closed.Load() {
		// Close ran since the caller checked, and its sweep may have
		// missed this call: take it back out.
		e.drop(c)
		return ErrClosed
	}
	return nil
}

// drop takes a call that never started out of the registry: inputs that
// found it meanwhile get ErrUnknownCall. c.mu is held.
func (e *Engine) drop(c *Call) {
	c.gone = true
	sh := e.shard(c.details.CallID)
	sh.mu.Lock()
	if sh.live[c.details.CallID] == c {
		delete(sh.live, c.details.CallID)
	}
	sh.mu.Unlock()
}

// ended moves a call from the live registry to the tombstones.
func (e *Engine) ended(c *Call) {
	id := c.details.CallID
	sh := e.shard(id)
	// Generations rotate on the clock, not on the transition's time: a
	// timeout applied late (after a restart) carries an old timestamp.
	clockNow := e.clock.Now().UnixNano()
	sh.mu.Lock()
	if sh.live[id] == c {
		delete(sh.live, id)
		e.live.Add(-1)
	}
	if clockNow >= sh.rotateAt {
		// Reuse the older generation's map: a short grace must not
		// allocate a map per rotation.
		sh.previous, sh.ended = sh.ended, sh.previous
		if sh.ended == nil {
			sh.ended = make(map[int64]tombstone)
		}
		clear(sh.ended)
		sh.rotateAt = clockNow + int64(e.grace)
	}
	// The grace runs from when the engine ended the call, which for a
	// timeout applied after a restart is later than its timestamp.
	sh.ended[id] = tombstone{state: c.state, at: clockNow}
	sh.mu.Unlock()
}
