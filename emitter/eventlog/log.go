// Package eventlog is the durable, ordered log of call events: what serve
// appends every event to before it is acknowledged or delivered, what it
// replays to rebuild live calls after a restart, what webhook delivery tails,
// and what `callfsm check` reads.
//
// Log is the interface; File is the JSON Lines implementation on local disk.
// A NATS JetStream stream is the other implementation, for running several
// nodes over one replicated log.
package eventlog

import (
	"context"
	"errors"

	"github.com/callfsm/callfsm/call/event"
)

// Record is an event and its position in the log. Seq numbers start at 1 and
// grow by one per appended event, in append order; they are stable across
// restarts, so "<Seq>" identifies an event for good (webhook ids use it).
type Record struct {
	Seq   uint64
	Event event.Event
}

// Log is an append-only, ordered log of events. Implementations are safe for
// concurrent use.
type Log interface {
	// Append writes ev at the end of the log and returns its sequence
	// number. When it returns nil, the event is as durable as the log's
	// sync policy promises.
	Append(ctx context.Context, ev event.Event) (uint64, error)
	// Read returns up to max records with Seq >= from, in order; fewer (or
	// none) when the log ends sooner. It does not wait.
	Read(ctx context.Context, from uint64, max int) ([]Record, error)
	// Wait blocks until the log holds a record with Seq > after, or ctx is
	// done (returning ctx.Err()), or the log is closed (ErrClosed).
	Wait(ctx context.Context, after uint64) error
	// LastSeq returns the sequence number of the last record, 0 if none.
	LastSeq() uint64
	// Close releases the log. Later calls return ErrClosed; Close is
	// idempotent.
	Close() error
}

// ErrClosed is returned by a Log's methods after Close.
var ErrClosed = errors.New("eventlog: closed")
