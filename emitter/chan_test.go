package emitter_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

// returned reports whether errc holds a result, and which.
func returned(errc <-chan error) (error, bool) {
	select {
	case err := <-errc:
		return err, true
	default:
		return nil, false
	}
}

func TestChanWaitsForTheReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan event.Event)
		c := emitter.NewChan(ch)
		defer c.Close()
		errc := make(chan error, 1)
		go func() { errc <- c.Emit(context.Background(), testEvent(1)) }()
		synctest.Wait()
		if err, ok := returned(errc); ok {
			t.Fatalf("Emit returned %v with nobody reading", err)
		}
		if ev := <-ch; ev.CallID != 1 {
			t.Errorf("received CallID %d, want 1", ev.CallID)
		}
		if err := <-errc; err != nil {
			t.Errorf("Emit = %v, want nil", err)
		}
	})
}

func TestChanGivesUpWhenContextIsDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan event.Event)
		c := emitter.NewChan(ch)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- c.Emit(ctx, testEvent(1)) }()
		synctest.Wait()
		if err, ok := returned(errc); ok {
			t.Fatalf("Emit returned %v before ctx was cancelled", err)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Emit = %v, want context.Canceled", err)
		}
		select {
		case ev := <-ch:
			t.Errorf("event %d was sent after Emit gave up", ev.CallID)
		default:
		}
	})
}

func TestChanCloseWakesEmitAndLeavesTheChannelOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan event.Event)
		c := emitter.NewChan(ch)
		errc := make(chan error, 1)
		go func() { errc <- c.Emit(context.Background(), testEvent(1)) }()
		synctest.Wait()
		if err := c.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		if err := <-errc; !errors.Is(err, emitter.ErrClosed) {
			t.Errorf("waiting Emit after Close = %v, want ErrClosed", err)
		}
		// The channel is still the caller's, open: closing it must not
		// panic, and after Close no Emit can be sending on it.
		close(ch)
	})
}

func TestNewChanPanicsOnNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewChan(nil) did not panic")
		}
	}()
	emitter.NewChan(nil)
}
