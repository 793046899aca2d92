package emitter

import (
	"context"
	"errors"

	"github.com/callfsm/callfsm/call/event"
)

// Emitter receives the events of call transitions.
//
// Emit must be safe for concurrent use: the engine calls it from many
// goroutines. Events emitted by one goroutine reach the destination in the
// order of the calls.
//
// A nil error means the event was accepted: delivered, or buffered or queued
// for delivery. A sink that buffers or queues reports a later failure from
// its Flush or Close (or a callback it documents), never silently.
//
// ctx bounds how long Emit may wait (for a reader, for room in a queue, for
// the network). When Emit gives up because ctx is done it returns ctx.Err()
// or an error wrapping it, and should not have delivered ev. A sink that
// never waits may ignore ctx. Emit does not retain ctx after it returns.
//
// ev is a value, but ev.ScheduleID and ev.User.PhoneNumber are pointers
// shared with the caller. Once an event is emitted, neither the caller nor
// any Emitter may write through them; in exchange an Emitter may keep ev (in
// a queue, a recorder) after Emit returns without copying it.
//
// If an Emitter also implements io.Closer, Emit after Close returns an error
// for which errors.Is(err, ErrClosed) is true, and Close is idempotent.
type Emitter interface {
	Emit(ctx context.Context, ev event.Event) error
}

// Flusher is implemented by Emitters that buffer or queue events. Flush
// returns once everything emitted before the call has reached the
// destination, and reports what failed on the way. Flush after Close
// returns ErrClosed.
type Flusher interface {
	Flush() error
}

// ErrClosed is returned (possibly wrapped) by Emit and Flush after Close.
var ErrClosed = errors.New("emitter: closed")

// ErrQueueFull is returned by [Async.Emit] under the [Fail] policy when the
// queue has no room; the event was not accepted.
var ErrQueueFull = errors.New("emitter: queue full")

// Func is an Emitter that calls itself: a callback sink. It is as safe for
// concurrent use, and as ordered, as the function is.
type Func func(ctx context.Context, ev event.Event) error

// Emit calls f(ctx, ev) and returns its error.
func (f Func) Emit(ctx context.Context, ev event.Event) error { return f(ctx, ev) }

// Discard is an Emitter that drops every event and never fails.
var Discard Emitter = discard{}

type discard struct{}

func (discard) Emit(context.Context, event.Event) error { return nil }
