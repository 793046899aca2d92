package eventlog

import (
	"context"
	"sync"
)

// Watermark is the highest sequence number a Log has made visible to
// readers, and the way to wait for it to grow: the part of LastSeq and Wait
// every implementation shares. Its zero value is ready to use, at 0. It is
// safe for concurrent use.
type Watermark struct {
	mu      sync.Mutex
	seq     uint64
	closed  bool
	changed chan struct{} // closed and replaced when seq grows; closed by Close
}

// chanLocked returns the channel the next change closes. w.mu is held.
func (w *Watermark) chanLocked() chan struct{} {
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	return w.changed
}

// Raise moves the watermark up to seq, waking every Wait; a lower seq
// changes nothing.
func (w *Watermark) Raise(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq <= w.seq {
		return
	}
	w.seq = seq
	if !w.closed {
		close(w.chanLocked())
		w.changed = make(chan struct{})
	}
}

// Load returns the watermark.
func (w *Watermark) Load() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

// Wait blocks until the watermark is above after (nil), ctx is done
// (ctx.Err()) or Close was called (ErrClosed, which wins).
func (w *Watermark) Wait(ctx context.Context, after uint64) error {
	for {
		w.mu.Lock()
		seq, closed, ch := w.seq, w.closed, w.chanLocked()
		w.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case seq > after:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close makes every Wait, present and future, return ErrClosed. It is
// idempotent.
func (w *Watermark) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.chanLocked())
	}
}
