package simulate

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
)

// merger interleaves the workers' chunks into the output, in order of
// (time, call_id, line of the call), numbers the lines and writes the truth
// record of every finding a line must yield.
type merger struct {
	s        *Simulator
	w        *bufio.Writer
	truth    *bufio.Writer // nil: no truth wanted
	lines    int64
	findings int64
	first    int64 // first line's timestamp
	latest   int64 // latest timestamp written
	rec      []byte
}

type head struct {
	w *worker
	c *chunk
	i int
}

// next moves h to its worker's next chunk, and reports false when the
// worker has no more.
func (h *head) next(ctx context.Context) (bool, error) {
	if h.c != nil {
		select {
		case h.w.recycled <- h.c:
		default:
		}
		h.c = nil
	}
	select {
	case c, ok := <-h.w.out:
		if !ok {
			return false, nil
		}
		h.c, h.i = c, 0
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (m *merger) merge(ctx context.Context, workers []*worker) error {
	heads := make([]*head, 0, len(workers))
	for _, w := range workers {
		h := &head{w: w}
		ok, err := h.next(ctx)
		if err != nil {
			return err
		}
		if ok {
			heads = append(heads, h)
		}
	}
	for len(heads) > 0 {
		best := 0
		for k := 1; k < len(heads); k++ {
			if heads[k].c.ents[heads[k].i].less(&heads[best].c.ents[heads[best].i]) {
				best = k
			}
		}
		h := heads[best]
		e := &h.c.ents[h.i]
		if _, err := m.w.Write(h.c.buf[e.start:e.end]); err != nil {
			return fmt.Errorf("simulate: write: %w", err)
		}
		m.lines++
		if m.lines == 1 {
			m.first = e.ts
		}
		m.latest = max(m.latest, e.ts)
		if e.rules[0] != noRule {
			if err := m.record(e); err != nil {
				return err
			}
		}
		if h.i++; h.i < len(h.c.ents) {
			continue
		}
		ok, err := h.next(ctx)
		if err != nil {
			return err
		}
		if !ok {
			heads = append(heads[:best], heads[best+1:]...)
		}
	}
	return nil
}

// record writes the truth records of one line.
func (m *merger) record(e *entry) error {
	for _, r := range e.rules {
		if r == noRule {
			continue
		}
		m.findings++
		if m.truth == nil {
			continue
		}
		b := append(m.rec[:0], `{"line":`...)
		b = strconv.AppendInt(b, m.lines, 10)
		b = append(b, `,"call_id":`...)
		b = strconv.AppendInt(b, e.id, 10)
		b = append(b, `,"rule":"`...)
		b = append(b, ruleCodes[r]...)
		b = append(b, `","fault":"`...)
		b = append(b, faultKinds[e.fault-1]...)
		b = append(b, `","event":`...)
		b = append(b, m.s.life.quoted[e.state]...)
		b = append(b, "}\n"...)
		m.rec = b
		if _, err := m.truth.Write(b); err != nil {
			return fmt.Errorf("simulate: write truth: %w", err)
		}
	}
	return nil
}
