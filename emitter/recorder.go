package emitter

import (
	"context"
	"slices"
	"sync"

	"github.com/callfsm/callfsm/call/event"
)

// Recorder is an Emitter that keeps every event in memory, in the order
// Emit was called. It is meant for tests. It is safe for concurrent use, its
// Emit never fails, and its zero value is ready to use.
type Recorder struct {
	mu     sync.Mutex
	events []event.Event
}

// Emit appends ev to the recorded events and returns nil.
func (r *Recorder) Emit(_ context.Context, ev event.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

// Events returns a copy of the events recorded so far, oldest first (nil if
// none). The copy shares the events' pointer fields with the emitters'
// callers; see [Emitter].
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Reset forgets every recorded event.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}
