package emitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/callfsm/callfsm/call/event"
)

// FanOut returns an Emitter that emits every event to each of sinks in turn.
//
// Every sink is tried even when an earlier one fails; Emit returns the
// failures joined with errors.Join, each naming the sink's index, so
// errors.Is finds any of them. The result is safe for concurrent use if the
// sinks are, and keeps their ordering guarantees.
//
// The result also implements [Flusher] and io.Closer: Flush flushes every
// sink that is a Flusher, Close closes every sink that is an io.Closer, both
// joining the failures the same way. Emit and Flush after Close return
// ErrClosed; Close is idempotent and every call returns the first one's
// result.
//
// FanOut copies sinks. It panics if one of them is nil.
func FanOut(sinks ...Emitter) Emitter {
	for i, s := range sinks {
		if s == nil {
			panic(fmt.Sprintf("emitter: FanOut: sink %d is nil", i))
		}
	}
	f := &fanOut{sinks: make([]Emitter, len(sinks))}
	copy(f.sinks, sinks)
	return f
}

type fanOut struct {
	sinks    []Emitter
	closed   atomic.Bool
	once     sync.Once
	closeErr error // set once, inside once
}

func (f *fanOut) Emit(ctx context.Context, ev event.Event) error {
	if f.closed.Load() {
		return ErrClosed
	}
	var errs []error
	for i, s := range f.sinks {
		if err := s.Emit(ctx, ev); err != nil {
			errs = append(errs, fmt.Errorf("emitter: fan-out sink %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (f *fanOut) Flush() error {
	if f.closed.Load() {
		return ErrClosed
	}
	var errs []error
	for i, s := range f.sinks {
		if fl, ok := s.(Flusher); ok {
			if err := fl.Flush(); err != nil {
				errs = append(errs, fmt.Errorf("emitter: fan-out sink %d: flush: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (f *fanOut) Close() error {
	f.once.Do(func() {
		f.closed.Store(true)
		var errs []error
		for i, s := range f.sinks {
			if c, ok := s.(io.Closer); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("emitter: fan-out sink %d: close: %w", i, err))
				}
			}
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}
