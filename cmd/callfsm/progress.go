package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// progressLine draws one line of progress on stderr when it is a
// terminal: from one second into the work, at most five times a second, so
// that short runs never show it, and pipes never see it.
type progressLine struct {
	w          io.Writer
	isTerminal func(io.Writer) bool
	on         bool
	now        func() time.Time
	start      time.Time
	last       time.Time
	shown      bool
}

// newProgressLine returns a progressLine on w. Nil isTerminal and now mean
// the real ones (tests inject theirs).
func newProgressLine(w io.Writer, isTerminal func(io.Writer) bool, now func() time.Time) *progressLine {
	if isTerminal == nil {
		isTerminal = func(w io.Writer) bool {
			f, ok := w.(*os.File)
			return ok && term.IsTerminal(int(f.Fd()))
		}
	}
	if now == nil {
		now = time.Now
	}
	return &progressLine{w: w, isTerminal: isTerminal, on: isTerminal(w), now: now, start: now()}
}

// due reports whether a line is to be drawn now, and how long the work
// has run.
func (p *progressLine) due() (elapsed time.Duration, ok bool) {
	if !p.on {
		return 0, false
	}
	t := p.now()
	if t.Sub(p.start) < time.Second || t.Sub(p.last) < 200*time.Millisecond {
		return 0, false
	}
	p.last = t
	return t.Sub(p.start), true
}

// show draws line in place of the previous one.
func (p *progressLine) show(line string) {
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.shown = true
}

// clear erases the line, so that what follows prints on a clean line.
func (p *progressLine) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
