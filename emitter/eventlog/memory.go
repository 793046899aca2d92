package eventlog

import (
	"context"
	"sync"

	"github.com/callfsm/callfsm/call/event"
)

// Memory is a Log held in memory: nothing survives the process. It is for
// tests and for embedding the engine where durability comes from elsewhere.
// The zero value is not ready; use NewMemory.
type Memory struct {
	mu     sync.Mutex
	recs   []Record
	closed bool
	mark   Watermark // len(recs)
}

var _ Log = (*Memory)(nil)

// NewMemory returns an empty in-memory log.
func NewMemory() *Memory { return &Memory{} }

// Append adds ev at the end of the log.
func (m *Memory) Append(_ context.Context, ev event.Event) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	seq := uint64(len(m.recs)) + 1
	m.recs = append(m.recs, Record{Seq: seq, Event: ev})
	m.mark.Raise(seq)
	return seq, nil
}

// Read returns up to max records with Seq >= from.
func (m *Memory) Read(_ context.Context, from uint64, max int) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if from == 0 {
		from = 1
	}
	if max <= 0 || from > uint64(len(m.recs)) {
		return nil, nil
	}
	end := min(from-1+uint64(max), uint64(len(m.recs)))
	return append([]Record(nil), m.recs[from-1:end]...), nil
}

// Wait blocks until a record with Seq > after exists.
func (m *Memory) Wait(ctx context.Context, after uint64) error { return m.mark.Wait(ctx, after) }

// LastSeq returns the sequence number of the last record.
func (m *Memory) LastSeq() uint64 { return m.mark.Load() }

// Close makes later calls return ErrClosed and wakes every Wait. It is
// idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.mark.Close()
	return nil
}
