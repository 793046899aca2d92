package emittertest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeT records failures instead of failing the real test, so that a check
// can be run against a broken sink and be seen to fail. Methods it does not
// override panic through the nil embedded TB.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Logf(format string, args ...any) {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

func (f *fakeT) Fatal(args ...any) {
	f.Errorf("%s", fmt.Sprint(args...))
	runtime.Goexit()
}

// runCheck runs fn against h on its own goroutine (so Fatalf can end it) and
// returns what it reported.
func runCheck(fn func(testing.TB, Harness), h Harness) (failed bool, msgs string) {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f, h)
	}()
	<-done
	return f.failed, strings.Join(f.msgs, "\n")
}

// store is a destination for the fake sinks below.
type store struct {
	mu     sync.Mutex
	events []event.Event
}

func (s *store) add(evs ...event.Event) {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
}

func (s *store) get() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// sink is a configurable, possibly broken, Emitter with Flush and Close.
type sink struct {
	faults
	st      *store
	mu      sync.Mutex
	n       int
	closed  bool
	pending []event.Event // buffered until Flush or Close
}

// faults says how a sink behaves, and misbehaves.
type faults struct {
	buffer     bool // buffer events until Flush
	lifo       bool // Flush writes the buffer backwards
	dropEvery  int  // drop (and accept) every n-th event
	duplicate  bool // deliver every event twice
	ignoreCtx  bool // accept and drop events whose ctx is done
	wrongCtx   bool // fail events whose ctx is done with another error
	openAfter  bool // accept events after Close
	closeTwice bool // second Close fails
	lostFlush  bool // Flush does nothing
}

func (s *sink) Emit(ctx context.Context, ev event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed && !s.openAfter {
		return emitter.ErrClosed
	}
	s.n++
	switch {
	case ctx.Err() != nil && s.ignoreCtx:
		return nil
	case ctx.Err() != nil && s.wrongCtx:
		return fmt.Errorf("no")
	case s.dropEvery > 0 && s.n%s.dropEvery == 0:
		return nil
	}
	if s.duplicate {
		s.st.add(ev)
	}
	if s.buffer {
		s.pending = append(s.pending, ev)
		return nil
	}
	s.st.add(ev)
	return nil
}

func (s *sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return emitter.ErrClosed
	}
	if s.lostFlush {
		return nil
	}
	s.flushLocked()
	return nil
}

func (s *sink) flushLocked() {
	if s.lifo {
		slices.Reverse(s.pending)
	}
	s.st.add(s.pending...)
	s.pending = nil
}

func (s *sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if s.closeTwice {
			return fmt.Errorf("already closed")
		}
		return nil
	}
	s.closed = true
	s.flushLocked()
	return nil
}

func harness(f faults) Harness {
	s := &sink{faults: f, st: &store{}}
	return Harness{Sink: s, Events: s.st.get}
}

func TestChecksPassAGoodSink(t *testing.T) {
	for _, c := range checks() {
		for _, f := range []faults{{}, {buffer: true}} {
			if failed, msgs := runCheck(c.fn, harness(f)); failed {
				t.Errorf("%s with buffer=%v failed a correct sink:\n%s", c.name, f.buffer, msgs)
			}
		}
	}
}

func TestChecksCatchBrokenSinks(t *testing.T) {
	tests := []struct {
		name  string
		sink  faults
		fails []string // checks that must fail
	}{
		{"drops events", faults{dropEvery: 7}, []string{"Order", "Concurrent", "Flush", "Close", "CloseDuringEmit", "CancelledContext"}},
		{"duplicates events", faults{duplicate: true}, []string{"Order", "Concurrent", "Flush", "Close", "CloseDuringEmit", "CancelledContext"}},
		{"reorders on flush", faults{buffer: true, lifo: true}, []string{"Order", "Concurrent", "Flush", "CancelledContext"}},
		{"flush loses the buffer", faults{buffer: true, lostFlush: true}, []string{"Order", "Concurrent", "Flush", "CancelledContext"}},
		{"accepts events after Close", faults{openAfter: true}, []string{"Close", "CloseDuringEmit"}},
		{"second Close fails", faults{closeTwice: true}, []string{"Close", "CloseDuringEmit"}},
		{"drops events under a cancelled context", faults{ignoreCtx: true}, []string{"CancelledContext"}},
		{"fails a cancelled context with another error", faults{wrongCtx: true}, []string{"CancelledContext"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range checks() {
				if !slices.Contains(tt.fails, c.name) {
					continue
				}
				if failed, _ := runCheck(c.fn, harness(tt.sink)); !failed {
					t.Errorf("%s passed a sink that %s", c.name, tt.name)
				}
			}
		})
	}
}

// TestRun runs the kit over Recorder the way a sink's author would.
func TestRun(t *testing.T) {
	Run(t, func(t *testing.T) Harness {
		var r emitter.Recorder
		return Harness{Sink: &r, Events: r.Events}
	})
}
