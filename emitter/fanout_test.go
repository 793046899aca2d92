package emitter_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

// failing is an Emitter whose every method fails with err, and which
// counts its Flushes and Closes.
type failing struct {
	err             error
	flushes, closes int
}

func (f *failing) Emit(context.Context, event.Event) error { return f.err }
func (f *failing) Flush() error                            { f.flushes++; return f.err }
func (f *failing) Close() error                            { f.closes++; return f.err }

func TestFanOutTriesEverySink(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	var r1, r2 emitter.Recorder
	f := emitter.FanOut(&failing{err: errA}, &r1, &failing{err: errB}, &r2)
	err := f.Emit(context.Background(), testEvent(1))
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("Emit = %v, want both sinks' errors", err)
	}
	if err != nil && (!strings.Contains(err.Error(), "sink 0") || !strings.Contains(err.Error(), "sink 2")) {
		t.Errorf("Emit = %q, want the failing sinks named by index", err)
	}
	if len(r1.Events()) != 1 || len(r2.Events()) != 1 {
		t.Errorf("healthy sinks got %d and %d events, want 1 each", len(r1.Events()), len(r2.Events()))
	}
}

func TestFanOutFlushAndClosePassThrough(t *testing.T) {
	errA, errB := errors.New("a failed"), errors.New("b failed")
	a, b := &failing{err: errA}, &failing{err: errB}
	var r emitter.Recorder // neither Flusher nor Closer
	f := emitter.FanOut(a, &r, b)

	if err := f.(emitter.Flusher).Flush(); !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("Flush = %v, want both sinks' errors", err)
	}
	if a.flushes != 1 || b.flushes != 1 {
		t.Errorf("Flushes passed on: %d and %d, want 1 each", a.flushes, b.flushes)
	}

	c := f.(io.Closer)
	err := c.Close()
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("Close = %v, want both sinks' errors", err)
	}
	if err2 := c.Close(); err2 != err {
		t.Errorf("second Close = %v, want the first's result %v", err2, err)
	}
	if a.closes != 1 || b.closes != 1 {
		t.Errorf("Closes passed on: %d and %d, want 1 each", a.closes, b.closes)
	}
	if err := f.Emit(context.Background(), testEvent(1)); !errors.Is(err, emitter.ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
	if err := f.(emitter.Flusher).Flush(); !errors.Is(err, emitter.ErrClosed) || a.flushes != 1 {
		t.Errorf("Flush after Close = %v and reached the sinks %d times, want ErrClosed and 1", err, a.flushes)
	}
}

func TestFanOutCopiesItsSinks(t *testing.T) {
	var r1, r2 emitter.Recorder
	sinks := []emitter.Emitter{&r1}
	f := emitter.FanOut(sinks...)
	sinks[0] = &r2
	if err := f.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if len(r1.Events()) != 1 || len(r2.Events()) != 0 {
		t.Errorf("got %d and %d events, want 1 and 0: FanOut must copy its arguments", len(r1.Events()), len(r2.Events()))
	}
}

func TestFanOutPanicsOnNilSink(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("FanOut with a nil sink did not panic")
		}
	}()
	emitter.FanOut(emitter.Discard, nil)
}

func TestFanOutEmitDoesNotAllocate(t *testing.T) {
	f := emitter.FanOut(emitter.Discard, emitter.NewJSONLines(io.Discard))
	ev := testEvent(1)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := f.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Emit allocates %v times per call, want 0", allocs)
	}
}
