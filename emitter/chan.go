package emitter

import (
	"context"
	"sync"

	"github.com/callfsm/callfsm/call/event"
)

// Chan is an Emitter that sends each event on a channel the caller reads.
// It is safe for concurrent use.
//
// Chan does not own the channel: Close stops Emit from sending but does not
// close it. Once Close has returned no Emit is sending or will send, so the
// caller may then close the channel to tell its reader that no more events
// will come.
type Chan struct {
	ch      chan<- event.Event
	mu      sync.RWMutex  // held for reading by every send, for writing by Close
	closed  bool          // guarded by mu
	closing chan struct{} // closed by Close: wakes Emits waiting for a reader
	once    sync.Once
}

// NewChan returns a Chan that sends on ch. ch may be buffered or not. It
// panics if ch is nil, since sending on a nil channel blocks forever.
func NewChan(ch chan<- event.Event) *Chan {
	if ch == nil {
		panic("emitter: NewChan: nil channel")
	}
	return &Chan{ch: ch, closing: make(chan struct{})}
}

// Emit sends ev on the channel, waiting until it is received (or buffered)
// or ctx is done, in which case it returns ctx.Err() and ev is not sent.
// ctx only bounds the wait: if the send can proceed at once it does, even
// with a done ctx. Emit after Close, or waiting when Close is called,
// returns ErrClosed.
func (c *Chan) Emit(ctx context.Context, ev event.Event) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	select {
	case c.ch <- ev:
		return nil
	default:
	}
	select {
	case c.ch <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closing:
		return ErrClosed
	}
}

// Close stops the Chan: Emits waiting for a reader return ErrClosed, later
// ones too, and Close returns once none is sending. It does not close the
// channel. Close is idempotent and always returns nil.
func (c *Chan) Close() error {
	c.once.Do(func() {
		close(c.closing)
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
	})
	return nil
}
