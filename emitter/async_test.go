package emitter_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

// gated returns a sink that takes each event into r only when release lets
// one through (a receive) or is closed.
func gated(release <-chan struct{}, r *emitter.Recorder) emitter.Func {
	return func(ctx context.Context, ev event.Event) error {
		<-release
		return r.Emit(ctx, ev)
	}
}

func newAsync(t *testing.T, next emitter.Emitter, cfg emitter.AsyncConfig) *emitter.Async {
	t.Helper()
	a, err := emitter.NewAsync(next, cfg)
	if err != nil {
		t.Fatalf("NewAsync: %v", err)
	}
	return a
}

func TestAsyncFailPolicyReportsAFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 3
		release := make(chan struct{})
		var r emitter.Recorder
		a := newAsync(t, gated(release, &r), emitter.AsyncConfig{QueueSize: size, Policy: emitter.Fail})
		emit := func(i int) error { return a.Emit(context.Background(), testEvent(i)) }

		if err := emit(0); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the worker holds event 0 at the gate; the queue is empty
		for i := 1; i <= size; i++ {
			if err := emit(i); err != nil {
				t.Fatalf("Emit %d into a queue holding %d of %d = %v, want nil", i, a.Len(), size, err)
			}
		}
		if a.Len() != size {
			t.Fatalf("Len = %d, want %d", a.Len(), size)
		}
		if err := emit(size + 1); !errors.Is(err, emitter.ErrQueueFull) {
			t.Fatalf("Emit into a full queue = %v, want ErrQueueFull", err)
		}

		release <- struct{}{} // event 0 delivered; the worker takes event 1
		synctest.Wait()
		if a.Len() != size-1 {
			t.Fatalf("Len after one delivery = %d, want %d", a.Len(), size-1)
		}
		if err := emit(size + 2); err != nil {
			t.Fatalf("Emit into the freed place = %v, want nil", err)
		}
		if err := emit(size + 3); !errors.Is(err, emitter.ErrQueueFull) {
			t.Fatalf("Emit into the full queue again = %v, want ErrQueueFull", err)
		}

		close(release)
		if err := a.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		if got, want := callIDs(r.Events()), []int64{0, 1, 2, 3, 5}; !slices.Equal(got, want) {
			t.Errorf("delivered %v, want %v (every accepted event, in order)", got, want)
		}
	})
}

func TestAsyncBlockPolicyWaitsForRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 2
		release := make(chan struct{})
		var r emitter.Recorder
		a := newAsync(t, gated(release, &r), emitter.AsyncConfig{QueueSize: size})
		emitAsync := func(ctx context.Context, i int) <-chan error {
			errc := make(chan error, 1)
			go func() { errc <- a.Emit(ctx, testEvent(i)) }()
			return errc
		}

		if err := a.Emit(context.Background(), testEvent(0)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the worker holds event 0 at the gate
		for i := 1; i <= size; i++ {
			if err := a.Emit(context.Background(), testEvent(i)); err != nil {
				t.Fatal(err)
			}
		}

		// A full queue: Emit waits until the worker makes room.
		errc := emitAsync(context.Background(), 3)
		synctest.Wait()
		if err, ok := returned(errc); ok {
			t.Fatalf("Emit into a full queue returned %v, want it to wait", err)
		}
		release <- struct{}{}
		synctest.Wait()
		if err, ok := returned(errc); !ok || err != nil {
			t.Fatalf("Emit after room was made: returned=%v err=%v, want nil", ok, err)
		}

		// Full again: a cancelled ctx ends the wait, and the event is not
		// queued.
		ctx, cancel := context.WithCancel(context.Background())
		errc = emitAsync(ctx, 4)
		synctest.Wait()
		if err, ok := returned(errc); ok {
			t.Fatalf("Emit into a full queue returned %v, want it to wait", err)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Emit whose ctx was cancelled = %v, want context.Canceled", err)
		}

		// Close wakes a waiting Emit with ErrClosed, then drains the queue.
		errc = emitAsync(context.Background(), 5)
		synctest.Wait()
		closed := make(chan error, 1)
		go func() { closed <- a.Close() }()
		if err := <-errc; !errors.Is(err, emitter.ErrClosed) {
			t.Fatalf("Emit waiting when Close was called = %v, want ErrClosed", err)
		}
		synctest.Wait()
		if err, ok := returned(closed); ok {
			t.Fatalf("Close returned %v with events still queued", err)
		}
		close(release)
		if err := <-closed; err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		if got, want := callIDs(r.Events()), []int64{0, 1, 2, 3}; !slices.Equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		if err := a.Emit(context.Background(), testEvent(6)); !errors.Is(err, emitter.ErrClosed) {
			t.Errorf("Emit after Close = %v, want ErrClosed", err)
		}
	})
}

// failOdd fails the events with an odd CallID.
var errOdd = errors.New("odd call")

func failOdd(r *emitter.Recorder) emitter.Func {
	return func(ctx context.Context, ev event.Event) error {
		if ev.CallID%2 == 1 {
			return errOdd
		}
		return r.Emit(ctx, ev)
	}
}

func TestAsyncReportsFailuresToOnError(t *testing.T) {
	var (
		r      emitter.Recorder
		mu     sync.Mutex
		failed []int64
	)
	a := newAsync(t, failOdd(&r), emitter.AsyncConfig{OnError: func(ev event.Event, err error) {
		if !errors.Is(err, errOdd) {
			t.Errorf("OnError got %v, want the sink's error", err)
		}
		mu.Lock()
		failed = append(failed, ev.CallID)
		mu.Unlock()
	}})
	for i := range 6 {
		if err := a.Emit(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close = %v, want nil: the errors went to OnError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int64{1, 3, 5}; !slices.Equal(failed, want) {
		t.Errorf("OnError saw %v, want %v", failed, want)
	}
	if got, want := callIDs(r.Events()), []int64{0, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// joined returns the errors err joins (itself alone if it joins none).
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestAsyncReturnsFailuresFromFlushAndClose(t *testing.T) {
	var r emitter.Recorder
	a := newAsync(t, failOdd(&r), emitter.AsyncConfig{})
	emit := func(from, to int) {
		for i := from; i < to; i++ {
			if err := a.Emit(context.Background(), testEvent(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(0, 4)
	err := a.Flush()
	if !errors.Is(err, errOdd) || len(joined(err)) != 2 {
		t.Fatalf("Flush = %v, want the 2 failures of events 1 and 3", err)
	}
	if !strings.Contains(err.Error(), "call 3") {
		t.Errorf("Flush = %q, want the failed calls named", err)
	}
	if err := a.Flush(); err != nil {
		t.Errorf("second Flush = %v, want nil: failures are reported once", err)
	}
	emit(4, 6)
	err = a.Close()
	if !errors.Is(err, errOdd) || len(joined(err)) != 1 {
		t.Errorf("Close = %v, want the failure of event 5", err)
	}
	if err2 := a.Close(); err2 != err {
		t.Errorf("second Close = %v, want the first's %v", err2, err)
	}
	if err := a.Flush(); !errors.Is(err, emitter.ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
}

func TestAsyncKeepsABoundedNumberOfFailures(t *testing.T) {
	a := newAsync(t, failOdd(&emitter.Recorder{}), emitter.AsyncConfig{QueueSize: 256})
	for i := range 200 { // 100 failures
		if err := a.Emit(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := a.Close()
	errs := joined(err)
	if len(errs) != 65 {
		t.Fatalf("Close joins %d errors, want 64 kept and 1 counting the rest", len(errs))
	}
	if last := errs[64].Error(); !strings.Contains(last, "36 more") {
		t.Errorf("last error %q, want it to count the 36 not kept", last)
	}
}

func TestAsyncFlushesAndClosesNext(t *testing.T) {
	next := &failing{err: errWrite}
	a := newAsync(t, next, emitter.AsyncConfig{OnError: func(event.Event, error) {}})
	if err := a.Flush(); !errors.Is(err, errWrite) || next.flushes != 1 {
		t.Errorf("Flush = %v after %d Flushes of next, want next's error after 1", err, next.flushes)
	}
	err := a.Close()
	if !errors.Is(err, errWrite) || next.closes != 1 {
		t.Errorf("Close = %v after %d Closes of next, want next's error after 1", err, next.closes)
	}
	if err := a.Close(); !errors.Is(err, errWrite) || next.closes != 1 {
		t.Errorf("second Close = %v after %d Closes of next, want the same error after 1", err, next.closes)
	}
}

func TestAsyncCallsNextWithItsOwnContext(t *testing.T) {
	var r emitter.Recorder
	next := emitter.Func(func(ctx context.Context, ev event.Event) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return r.Emit(ctx, ev)
	})
	a := newAsync(t, next, emitter.AsyncConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Emit(ctx, testEvent(1)); err != nil {
		t.Fatalf("Emit with a cancelled ctx into an empty queue = %v, want nil (ctx only bounds the wait)", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close = %v: next saw the caller's cancelled ctx", err)
	}
	if len(r.Events()) != 1 {
		t.Errorf("delivered %d events, want 1", len(r.Events()))
	}
}

func TestAsyncShutdownGivesUpAndCancelsDelivery(t *testing.T) {
	// next waits for its context: only Shutdown giving up can end it.
	next := emitter.Func(func(ctx context.Context, _ event.Event) error {
		<-ctx.Done()
		return ctx.Err()
	})
	a := newAsync(t, next, emitter.AsyncConfig{})
	for i := range 3 {
		if err := a.Emit(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a done ctx = %v, want context.Canceled", err)
	}
	if err := a.Emit(context.Background(), testEvent(3)); !errors.Is(err, emitter.ErrClosed) {
		t.Errorf("Emit after Shutdown = %v, want ErrClosed", err)
	}
	err := a.Close() // waits for the worker; goleak checks it is gone
	if !errors.Is(err, context.Canceled) || len(joined(err)) != 3 {
		t.Errorf("Close after Shutdown gave up = %v, want the 3 cancelled deliveries", err)
	}
}

func TestAsyncShutdownWaitsForDelivery(t *testing.T) {
	var r emitter.Recorder
	a := newAsync(t, &r, emitter.AsyncConfig{})
	for i := range 3 {
		if err := a.Emit(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	if got := callIDs(r.Events()); !slices.Equal(got, []int64{0, 1, 2}) {
		t.Errorf("delivered %v, want [0 1 2]", got)
	}
}

func TestNewAsyncValidates(t *testing.T) {
	tests := []struct {
		name    string
		next    emitter.Emitter
		cfg     emitter.AsyncConfig
		wantErr string
	}{
		{"nil next", nil, emitter.AsyncConfig{}, "next is nil"},
		{"negative QueueSize", emitter.Discard, emitter.AsyncConfig{QueueSize: -1}, "QueueSize is -1"},
		{"unknown Policy", emitter.Discard, emitter.AsyncConfig{Policy: 7}, "unknown Policy(7)"},
		{"zero config", emitter.Discard, emitter.AsyncConfig{}, ""},
		{"Fail policy", emitter.Discard, emitter.AsyncConfig{QueueSize: 1, Policy: emitter.Fail}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := emitter.NewAsync(tt.next, tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewAsync = %v, want nil", err)
				}
				if err := a.Close(); err != nil {
					t.Errorf("Close = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewAsync = %v, want an error containing %q", err, tt.wantErr)
			}
			if a != nil {
				t.Errorf("NewAsync returned an Async with its error")
			}
		})
	}
}

func TestAsyncDefaultQueueSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		a := newAsync(t, gated(release, &emitter.Recorder{}), emitter.AsyncConfig{Policy: emitter.Fail})
		defer func() {
			close(release)
			if err := a.Close(); err != nil {
				t.Error(err)
			}
		}()
		if err := a.Emit(context.Background(), testEvent(0)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		for i := range emitter.DefaultQueueSize {
			if err := a.Emit(context.Background(), testEvent(i+1)); err != nil {
				t.Fatalf("Emit %d = %v, want room for %d", i+1, err, emitter.DefaultQueueSize)
			}
		}
		if err := a.Emit(context.Background(), testEvent(0)); !errors.Is(err, emitter.ErrQueueFull) {
			t.Errorf("Emit beyond DefaultQueueSize = %v, want ErrQueueFull", err)
		}
	})
}

func TestPolicyString(t *testing.T) {
	for p, want := range map[emitter.Policy]string{emitter.Block: "Block", emitter.Fail: "Fail", 9: "Policy(9)"} {
		if got := p.String(); got != want {
			t.Errorf("Policy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

func TestAsyncEmitDoesNotAllocate(t *testing.T) {
	a := newAsync(t, emitter.Discard, emitter.AsyncConfig{})
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	ev := testEvent(1)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := a.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Emit allocates %v times per call, want 0", allocs)
	}
}
