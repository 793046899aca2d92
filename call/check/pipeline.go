package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A batch is a run of whole lines of one input, read by the reader
// goroutine, decoded by a worker, then applied by the consumer in order.
type batch struct {
	file      int    // index of the input
	fileStart bool   // data begins at the input's first byte (BOM)
	data      []byte // whole lines; the last one may lack its '\n' at EOF
	// long is a batch of one line longer than the buffer, skipped by the
	// reader: data is empty and longBytes says how long it was.
	long      bool
	longBytes int64

	buf   []byte // the read buffer data is taken from
	recs  []rec  // decoded lines, set by the worker
	lines int    // lines in data, blank ones included
	text  []byte // unescaped strings the recs point into
	errs  []error
	ready chan struct{} // the worker is done with the batch
}

// pipeline reads inputs on one goroutine, decodes batches of lines on
// c.workers goroutines, and calls consume for each batch in input order
// on the calling goroutine. It returns when all of them have ended.
func (c *Checker) pipeline(ctx context.Context, inputs []Input, consume func(*batch)) error {
	inFlight := 2*c.workers + 2
	jobs := make(chan *batch, inFlight)
	order := make(chan *batch, inFlight)
	free := make(chan *batch, inFlight+1)
	for range inFlight + 1 {
		free <- &batch{buf: make([]byte, c.bufSize), ready: make(chan struct{}, 1)}
	}

	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			w := newWorker(c)
			for b := range jobs {
				w.decode(b)
				b.ready <- struct{}{}
			}
		})
	}
	var readErr error
	wg.Go(func() {
		defer close(order)
		defer close(jobs)
		readErr = c.read(ctx, inputs, free, func(b *batch) bool {
			select {
			case order <- b:
			case <-ctx.Done():
				return false
			}
			jobs <- b // never blocks: jobs holds every batch in flight
			return true
		})
	})

	for b := range order {
		<-b.ready
		if ctx.Err() == nil {
			consume(b)
		}
		free <- b
	}
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	return ctx.Err()
}

// read splits the inputs into batches of whole lines taken from the free
// list and hands them to send, which returns false when the check is
// cancelled. A line with no end in a full buffer is longer than the
// longest allowed: it is read through and dropped, and sent as a long
// batch.
func (c *Checker) read(ctx context.Context, inputs []Input, free chan *batch, send func(*batch) bool) error {
	get := func() (*batch, bool) {
		select {
		case b := <-free:
			return b, true
		case <-ctx.Done():
			return nil, false
		}
	}
	for fi, in := range inputs {
		b, ok := get()
		if !ok {
			return nil
		}
		carry := 0 // bytes of an unfinished line at the start of b.buf
		fileStart := true
		for {
			if ctx.Err() != nil {
				return nil
			}
			n, err := fill(in.R, b.buf[carry:])
			data := b.buf[:carry+n]
			eof := errors.Is(err, io.EOF)
			if err != nil && !eof {
				free <- b
				return fmt.Errorf("read %s: %w", in.Name, err)
			}
			if eof {
				if len(data) == 0 {
					free <- b
					break
				}
				b.set(fi, fileStart, data)
				if !send(b) {
					return nil
				}
				break
			}
			last := bytes.LastIndexByte(data, '\n')
			if last < 0 { // a full buffer and no line end: too long
				skipped, rest, err := c.skipLine(in.R, b.buf, int64(len(data)), data[len(data)-1])
				if err != nil {
					free <- b
					return fmt.Errorf("read %s: %w", in.Name, err)
				}
				b.setLong(fi, fileStart, skipped)
				if !send(b) {
					return nil
				}
				fileStart = false
				if b, ok = get(); !ok {
					return nil
				}
				carry = copy(b.buf, rest)
				continue
			}
			nb, ok := get()
			if !ok {
				return nil
			}
			carry = copy(nb.buf, data[last+1:])
			b.set(fi, fileStart, data[:last+1])
			if !send(b) {
				return nil
			}
			fileStart = false
			b = nb
		}
	}
	return nil
}

// skipLine reads on through a line of which n bytes are already read,
// the last of them last, using buf, until its end. It returns the line's
// length (its end, LF or CRLF, excluded) and the bytes read after its '\n'
// (in a new slice).
func (c *Checker) skipLine(r io.Reader, buf []byte, n int64, last byte) (int64, []byte, error) {
	for {
		k, err := fill(r, buf)
		if i := bytes.IndexByte(buf[:k], '\n'); i >= 0 {
			if i > 0 {
				last = buf[i-1]
			}
			n += int64(i)
			if last == '\r' {
				n--
			}
			return n, append([]byte(nil), buf[i+1:k]...), nil
		}
		n += int64(k)
		if k > 0 {
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			return n, nil, nil
		}
		if err != nil {
			return 0, nil, err
		}
	}
}

// fill reads into buf until it is full, the input ends (io.EOF) or fails.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k == 0 && n < len(buf) {
			// A reader that returns 0, nil: try again, as io.ReadFull does.
			continue
		}
	}
	return n, nil
}

func (b *batch) set(file int, fileStart bool, data []byte) {
	b.file, b.fileStart, b.data = file, fileStart, data
	b.long, b.longBytes = false, 0
}

func (b *batch) setLong(file int, fileStart bool, n int64) {
	b.file, b.fileStart, b.data = file, fileStart, nil
	b.long, b.longBytes = true, n
}
