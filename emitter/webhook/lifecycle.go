package webhook

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Run after Shutdown.
var ErrClosed = errors.New("webhook: dispatcher shut down")

type runState int

const (
	stateIdle runState = iota
	stateRunning
	stateStopped
)

// runOnce is the Run/Shutdown protocol every dispatcher of the package
// follows: Run runs once; Shutdown first drains (no new deliveries, the
// requests in progress finish) and, if its context ends first, cancels the
// requests in progress; both return once Run has returned.
type runOnce struct {
	mu     sync.Mutex
	state  runState
	drain  context.CancelFunc // starts draining (Shutdown)
	hard   context.CancelFunc // cancels requests in progress
	done   chan struct{}      // closed when Run has returned (or Shutdown before Run)
	runErr error
}

func newRunOnce() runOnce { return runOnce{done: make(chan struct{})} }

// begin starts Run. hardCtx ends with ctx, with hard, or when a Shutdown's
// context ends; drainCtx ends with hardCtx or when Shutdown is called. The
// caller must call hard, then end, before Run returns.
func (r *runOnce) begin(ctx context.Context) (hardCtx, drainCtx context.Context, hard context.CancelFunc, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case stateRunning:
		return nil, nil, nil, errors.New("webhook: Run called while running")
	case stateStopped:
		return nil, nil, nil, ErrClosed
	}
	r.state = stateRunning
	hardCtx, r.hard = context.WithCancel(ctx)
	drainCtx, r.drain = context.WithCancel(hardCtx)
	return hardCtx, drainCtx, r.hard, nil
}

// end records what Run returns and releases Shutdown.
func (r *runOnce) end(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = stateStopped
	r.runErr = err
	close(r.done)
}

// shutdown drains Run and waits for it; if ctx ends first it cancels the
// requests in progress, waits for Run all the same and returns ctx.Err().
// Called before Run, it makes Run return ErrClosed.
func (r *runOnce) shutdown(ctx context.Context) error {
	r.mu.Lock()
	switch r.state {
	case stateIdle:
		r.state = stateStopped
		close(r.done)
	case stateRunning:
		r.drain()
	}
	hard := r.hard
	r.mu.Unlock()

	select {
	case <-r.done:
	case <-ctx.Done():
		select {
		case <-r.done: // stopped in time after all
			return r.result()
		default:
		}
		if hard != nil {
			hard()
		}
		<-r.done
		return ctx.Err()
	}
	return r.result()
}

func (r *runOnce) result() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runErr
}
