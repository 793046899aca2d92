package emitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/callfsm/callfsm/call/event"
)

// jsonLinesBufferSize is how many bytes JSONLines gathers before writing.
const jsonLinesBufferSize = 64 << 10

// JSONLines is an Emitter that writes one JSON object per line (JSON Lines),
// each encoded by [event.Event.AppendJSON] in the seed's field order and
// ended by '\n'. It is safe for concurrent use: lines never interleave.
//
// Lines are gathered in a 64 KiB buffer and written to w when it fills, on
// Flush and on Close; an Emit that returned nil may therefore still be in
// the buffer. Writes happen under the sink's lock, so a slow w slows every
// Emit: put an [Async] in front of it if that matters. Emit does not
// allocate and ignores ctx.
//
// A write error is returned by the Emit or Flush that hit it and sticks:
// every later Emit and Flush returns it, and the lines still buffered at
// that moment are discarded (w may have received part of them).
type JSONLines struct {
	scratch  sync.Pool // of *[]byte, where Emit encodes a line
	mu       sync.Mutex
	w        io.Writer
	buf      []byte
	err      error // the first write error, returned from then on
	closed   bool
	closeErr error // what the first Close returned
}

// NewJSONLines returns a JSONLines writing to w. If w also has a
// Flush() error method (as *bufio.Writer does), Flush and Close call it
// after writing; if w is an io.Closer, Close closes it. To keep w open (for
// example os.Stdout) while closing the sink, hide its Close method:
// NewJSONLines(struct{ io.Writer }{w}). It panics if w is nil.
func NewJSONLines(w io.Writer) *JSONLines {
	if w == nil {
		panic("emitter: NewJSONLines: nil io.Writer")
	}
	// Room for a full buffer plus one more line, so the buffer never grows
	// for ordinary events.
	j := &JSONLines{w: w, buf: make([]byte, 0, jsonLinesBufferSize+4<<10)}
	j.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	return j
}

// Emit appends ev's line to the buffer, writing the buffer to w once it
// holds 64 KiB. It returns ErrClosed after Close, the sticky write error if
// there is one, and otherwise nil.
func (j *JSONLines) Emit(_ context.Context, ev event.Event) error {
	// Encode outside the lock, so that goroutines emitting at once encode
	// in parallel and hold the lock only to copy their line.
	scratch := j.scratch.Get().(*[]byte)
	line := append(ev.AppendJSON((*scratch)[:0]), '\n')
	defer func() {
		*scratch = line
		j.scratch.Put(scratch)
	}()

	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if j.err != nil {
		return j.err
	}
	j.buf = append(j.buf, line...)
	if len(j.buf) >= jsonLinesBufferSize {
		return j.writeLocked()
	}
	return nil
}

// Flush writes the buffered lines to w (then flushes w if it can be
// flushed). It returns the sticky write error if there is one, and
// ErrClosed after Close.
func (j *JSONLines) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	return j.flushLocked()
}

// Close flushes, then closes w if it is an io.Closer, and returns what
// failed (the sticky write error included). Later Emits and Flushes return
// ErrClosed. Close is idempotent: every call returns the first one's result.
func (j *JSONLines) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return j.closeErr
	}
	j.closed = true
	err := j.flushLocked()
	if c, ok := j.w.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("emitter: JSON Lines: close: %w", cerr))
		}
	}
	j.closeErr = err
	j.buf = nil
	return err
}

// flushLocked writes the buffer, then flushes w if it is a Flusher.
func (j *JSONLines) flushLocked() error {
	if err := j.writeLocked(); err != nil {
		return err
	}
	if f, ok := j.w.(Flusher); ok {
		if err := f.Flush(); err != nil {
			j.err = fmt.Errorf("emitter: JSON Lines: flush: %w", err)
			return j.err
		}
	}
	return nil
}

// writeLocked writes the buffer to w and empties it. j.mu must be held.
func (j *JSONLines) writeLocked() error {
	if j.err != nil {
		return j.err
	}
	if len(j.buf) == 0 {
		return nil
	}
	n, err := j.w.Write(j.buf)
	if err == nil && n < len(j.buf) {
		err = io.ErrShortWrite
	}
	j.buf = j.buf[:0]
	if err != nil {
		j.err = fmt.Errorf("emitter: JSON Lines: write: %w", err)
		return j.err
	}
	return nil
}
