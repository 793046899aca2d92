package emitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/callfsm/callfsm/call/event"
)

// DefaultQueueSize is the queue length [NewAsync] uses when
// AsyncConfig.QueueSize is 0.
const DefaultQueueSize = 1024

// maxKeptErrors bounds the delivery errors an Async without OnError keeps
// between two Flushes; further ones are counted, not kept.
const maxKeptErrors = 64

// Policy says what [Async.Emit] does when the queue is full. Neither policy
// drops an event without saying so.
type Policy int

const (
	// Block makes Emit wait for room in the queue, or until its ctx is done
	// (returning ctx.Err()) or the Async is closed (returning ErrClosed).
	Block Policy = iota
	// Fail makes Emit return ErrQueueFull at once.
	Fail
)

// String returns "Block", "Fail" or "Policy(n)".
func (p Policy) String() string {
	switch p {
	case Block:
		return "Block"
	case Fail:
		return "Fail"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// AsyncConfig configures [NewAsync]. The zero value is a 1024-event queue
// with the Block policy whose delivery errors are returned by Flush and
// Close.
type AsyncConfig struct {
	// QueueSize is how many events may wait for delivery; 0 means
	// DefaultQueueSize. A pending Flush takes a place too.
	QueueSize int

	// Policy is what Emit does when the queue is full; the zero value is
	// Block.
	Policy Policy

	// OnError, if set, is called by the worker goroutine, one call at a
	// time, for each event that the next sink failed to take. It must not
	// call the Async's Flush, Close or Shutdown (they wait for the worker,
	// which is waiting for OnError), nor block on its Emit.
	//
	// If OnError is nil the errors are kept and returned, joined, by the
	// first Flush, Close or Shutdown that follows them; past 64 between two
	// Flushes they are only counted, so a dead sink cannot exhaust memory.
	OnError func(ev event.Event, err error)
}

// Async is an Emitter that queues events and delivers them to the next sink
// from one worker goroutine, in queue order, so that a slow sink does not
// slow the caller of Emit. Async owns the worker: Close or Shutdown stops it.
// It is safe for concurrent use.
//
// The next sink is called with a context of the Async's own, not the one
// given to Emit (whose deadline and values end with the call): it is
// cancelled only when Shutdown gives up waiting.
type Async struct {
	next    Emitter
	policy  Policy
	onError func(event.Event, error)

	queue   chan asyncItem
	mu      sync.RWMutex  // held for reading by every send on queue, for writing by Close
	closed  bool          // guarded by mu; once set, nothing is sent on queue and it is closed
	closing chan struct{} // closed when Close begins: wakes senders waiting for room
	once    sync.Once

	ctx    context.Context // passed to next.Emit
	cancel context.CancelFunc
	done   chan struct{} // closed when the worker has returned
	err    error         // the worker's final result, readable once done is closed
}

// asyncItem is an event to deliver or, if flush is non-nil, a Flush waiting
// for the worker to reach it.
type asyncItem struct {
	ev    event.Event
	flush chan<- error
}

// NewAsync starts an Async delivering to next. It returns an error, and
// starts nothing, if next is nil, cfg.QueueSize is negative or cfg.Policy is
// neither Block nor Fail. The caller must call Close (or Shutdown) to stop
// the worker goroutine.
func NewAsync(next Emitter, cfg AsyncConfig) (*Async, error) {
	if next == nil {
		return nil, errors.New("emitter: NewAsync: next is nil")
	}
	if cfg.QueueSize < 0 {
		return nil, fmt.Errorf("emitter: NewAsync: QueueSize is %d, want >= 0", cfg.QueueSize)
	}
	if cfg.Policy != Block && cfg.Policy != Fail {
		return nil, fmt.Errorf("emitter: NewAsync: unknown %v", cfg.Policy)
	}
	size := cfg.QueueSize
	if size == 0 {
		size = DefaultQueueSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Async{
		next:    next,
		policy:  cfg.Policy,
		onError: cfg.OnError,
		queue:   make(chan asyncItem, size),
		closing: make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go a.run()
	return a, nil
}

// Emit queues ev for delivery. If the queue is full, the Block policy waits
// for room until ctx is done (returning ctx.Err()) and the Fail policy
// returns ErrQueueFull at once; ctx only bounds that wait. Emit after Close,
// or waiting when Close is called, returns ErrClosed. A nil error means ev
// is queued: delivery failures are reported to OnError or by Flush and
// Close.
func (a *Async) Emit(ctx context.Context, ev event.Event) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	select {
	case a.queue <- asyncItem{ev: ev}:
		return nil
	default:
	}
	if a.policy == Fail {
		return ErrQueueFull
	}
	select {
	case a.queue <- asyncItem{ev: ev}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-a.closing:
		return ErrClosed
	}
}

// Len returns how many events (and pending Flushes) are queued now.
func (a *Async) Len() int { return len(a.queue) }

// Flush waits until every event queued before the call has been handed to
// the next sink, then flushes that sink if it is a [Flusher]. It returns
// the delivery errors kept since the previous Flush (when OnError is nil)
// joined with the next sink's Flush error. Flush waits for room in the
// queue whatever the Policy. After Close it returns ErrClosed.
func (a *Async) Flush() error {
	reply := make(chan error, 1)
	if err := a.sendFlush(reply); err != nil {
		return err
	}
	return <-reply
}

func (a *Async) sendFlush(reply chan<- error) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	select {
	case a.queue <- asyncItem{flush: reply}:
		return nil
	case <-a.closing:
		return ErrClosed
	}
}

// Close stops accepting events, waits until the worker has delivered every
// queued one, closes the next sink if it is an io.Closer, and returns the
// delivery errors not yet reported (when OnError is nil) joined with the
// next sink's Close error. Emits waiting for room when Close is called return
// ErrClosed. Close is idempotent: every call waits for the worker and
// returns the same result.
func (a *Async) Close() error {
	return a.Shutdown(context.Background())
}

// Shutdown is Close with a bound on the wait. If ctx is done before the
// worker has finished, Shutdown cancels the context the next sink is called
// with and returns ctx.Err() without waiting further. The worker then still
// hands every queued event to the next sink, which, if it honours its
// context, fails them at once; the failures are reported as usual. Call
// Close afterwards to wait for the worker and collect its result: no
// goroutine is left once Close has returned, unless the next sink ignores
// its context and never returns.
func (a *Async) Shutdown(ctx context.Context) error {
	a.once.Do(a.stop)
	select {
	case <-a.done:
		return a.err
	default:
	}
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		a.cancel()
		return ctx.Err()
	}
}

// stop makes sure nothing more is sent on the queue, then closes it so the
// worker drains it and returns.
func (a *Async) stop() {
	close(a.closing)
	a.mu.Lock() // waits for the sends in progress
	a.closed = true
	a.mu.Unlock()
	close(a.queue)
}

// run is the worker: it owns every call to next.
func (a *Async) run() {
	defer close(a.done)
	defer a.cancel()
	var errs errorList
	for it := range a.queue {
		if it.flush != nil {
			err := errs.take()
			if f, ok := a.next.(Flusher); ok {
				if ferr := f.Flush(); ferr != nil {
					err = errors.Join(err, ferr)
				}
			}
			it.flush <- err
			continue
		}
		if err := a.next.Emit(a.ctx, it.ev); err != nil {
			if a.onError != nil {
				a.onError(it.ev, err)
			} else {
				errs.add(fmt.Errorf("emitter: async: %s of call %d: %w", it.ev.Event, it.ev.CallID, err))
			}
		}
	}
	err := errs.take()
	if c, ok := a.next.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	a.err = err
}

// errorList keeps up to maxKeptErrors errors and counts the rest.
type errorList struct {
	errs    []error
	dropped int
}

func (l *errorList) add(err error) {
	if len(l.errs) < maxKeptErrors {
		l.errs = append(l.errs, err)
		return
	}
	l.dropped++
}

// take returns the kept errors joined (nil if none) and empties the list.
func (l *errorList) take() error {
	if l.dropped > 0 {
		l.errs = append(l.errs, fmt.Errorf("emitter: async: %d more delivery errors not kept", l.dropped))
	}
	err := errors.Join(l.errs...)
	l.errs, l.dropped = nil, 0
	return err
}
