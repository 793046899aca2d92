package check

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/callfsm/callfsm/call/event"
)

// liveCall is a call that has not ended: everything the rules need.
type liveCall struct {
	id        int64
	used      bool
	state     uint8
	nh        uint8 // hashes in h
	entered   int64 // when the current state was entered
	latest    int64 // the latest timestamp applied
	userID    int64
	hSess     uint64
	hSched    uint64
	hAgent    uint64
	hUser     uint64
	hMeta     uint64
	session   string
	firstFile int
	firstLine int
	lastFile  int // where the last applied event is
	lastLine  int
	h         [6]uint64 // hashes of the call's lines, for duplicate
	more      []uint64  // and the ones that do not fit in h
}

func (lc *liveCall) has(h uint64) bool {
	return slices.Contains(lc.h[:lc.nh], h) || slices.Contains(lc.more, h)
}

func (lc *liveCall) add(h uint64) {
	if int(lc.nh) < len(lc.h) {
		lc.h[lc.nh] = h
		lc.nh++
		return
	}
	lc.more = append(lc.more, h)
}

func (lc *liveCall) hashes() []uint64 {
	if len(lc.more) == 0 {
		return lc.h[:lc.nh]
	}
	return append(lc.h[:lc.nh:lc.nh], lc.more...)
}

// An ended call is a tombstone: one uint64 in state.tombs, holding its
// terminal state and where its line hashes are in the arena. Live calls
// are in a map of their own, small enough to stay in cache.
//
//	bit 63: 1
//	bits 55-62: the terminal state
//	bits 43-54: how many hashes (at most maxTombHashes)
//	bits 0-42: their offset in the arena
const (
	tombBit       = 1 << 63
	maxTombHashes = 1<<12 - 1
	chunkBits     = 16
	chunkSize     = 1 << chunkBits
)

func tomb(st uint8, n int, off uint64) uint64 {
	return tombBit | uint64(st)<<55 | uint64(n)<<43 | off
}

func tombState(v uint64) uint8 { return uint8(v >> 55) }

// arena holds the line hashes of ended calls, each call's contiguous in a
// chunk, so that it grows without copying.
type arena struct {
	chunks [][]uint64
}

func (a *arena) alloc(hs []uint64) uint64 {
	last := len(a.chunks) - 1
	if last < 0 || len(a.chunks[last])+len(hs) > chunkSize {
		a.chunks = append(a.chunks, make([]uint64, 0, chunkSize))
		last++
	}
	off := uint64(last)<<chunkBits | uint64(len(a.chunks[last]))
	a.chunks[last] = append(a.chunks[last], hs...)
	return off
}

func (a *arena) get(v uint64) []uint64 {
	n := int(v >> 43 & maxTombHashes)
	off := v & (1<<43 - 1)
	c := a.chunks[off>>chunkBits]
	i := int(off & (chunkSize - 1))
	return c[i : i+n]
}

// pos orders findings: input, then line.
type pos struct{ file, line int }

// state is one Check's model of the calls: the consumer's, applied batch
// after batch in input order.
type state struct {
	c       *Checker
	tab     *table
	names   []string
	report  *Report
	byID    map[int64]uint32 // live calls: index in calls
	tombs   map[int64]uint64 // ended calls
	calls   []liveCall
	free    []uint32
	arena   arena
	maxTS   int64
	seenTS  bool
	file    int
	base    int // line number of the batch's first line, less one
	listed  int
	pos     []pos // of report.Findings
	outcome []int // calls ended per state
	times   []hist
	lines   int64
	events  int64
	diffBuf []string
}

func newState(c *Checker, inputs []Input) *state {
	n := len(c.tab.states)
	st := &state{
		c: c, tab: c.tab, byID: make(map[int64]uint32), tombs: make(map[int64]uint64), outcome: make([]int, n), times: make([]hist, n),
		report: &Report{
			Files: []string{}, Outcomes: map[string]int{}, Rules: map[Rule]int{},
			TimeInState: map[string]Durations{}, Findings: []Finding{},
		},
	}
	for _, in := range inputs {
		st.names = append(st.names, in.Name)
		st.report.Files = append(st.report.Files, in.Name)
	}
	return st
}

// consume applies a decoded batch.
func (s *state) consume(b *batch) {
	if b.file != s.file {
		s.file, s.base = b.file, 0
	}
	for i := range b.recs {
		s.apply(b, &b.recs[i])
	}
	s.base += b.lines
	if s.c.cfg.OnProgress != nil {
		s.c.cfg.OnProgress(Progress{Lines: s.lines, Events: s.events})
	}
}

// add counts a finding and lists it if there is room.
func (s *state) add(f Finding, p pos) {
	f.Severity = f.Rule.Severity()
	if f.Severity == SeverityError {
		s.report.Errors++
	} else {
		s.report.Warnings++
	}
	s.report.Rules[f.Rule]++
	if max := s.c.cfg.MaxFindings; max > 0 && s.listed >= max {
		s.report.Unlisted++
		return
	}
	s.listed++
	if s.c.cfg.OnFinding != nil {
		s.c.cfg.OnFinding(f)
		return
	}
	s.report.Findings = append(s.report.Findings, f)
	s.pos = append(s.pos, p)
}

// at is a finding of rule for rec r at line.
func (s *state) at(b *batch, r *rec, line int, rule Rule, msg string) {
	f := Finding{File: s.names[b.file], Line: line, Rule: rule, Message: msg}
	if r.hasID {
		f.CallID = r.callID
	}
	if r.state != noState && r.kind == kindEvent {
		f.Event = s.tab.names[r.state]
	} else if r.event.n > 0 {
		f.Event = b.str(r.event)
	}
	s.add(f, pos{b.file, line})
}

func (s *state) apply(b *batch, r *rec) {
	line := s.base + int(r.line)
	s.lines++
	s.report.Lines++
	switch r.kind {
	case kindLong:
		s.at(b, r, line, RuleMalformed, fmt.Sprintf("line of %d bytes is longer than the %d allowed: skipped", r.ts, s.c.cfg.MaxLineBytes))
		return
	case kindMalformed:
		s.at(b, r, line, RuleMalformed, b.errs[r.err].Error())
		return
	case kindMissing:
		var fe *event.FieldError
		msg := b.errs[r.err].Error()
		if errors.As(b.errs[r.err], &fe) {
			msg = fmt.Sprintf("field %q is missing", fe.Field)
		}
		s.at(b, r, line, RuleMissingField, msg)
		return
	}
	s.events++
	s.report.Events++
	if !s.seenTS || r.ts > s.maxTS {
		s.maxTS, s.seenTS = r.ts, true
	}
	if r.state == noState {
		s.at(b, r, line, RuleUnknownEvent, fmt.Sprintf("%q is not an event of lifecycle %q", b.str(r.event), s.tab.spec.Name()))
		return
	}
	if idx, live := s.byID[r.callID]; live {
		s.step(b, r, line, idx)
	} else if v, ended := s.tombs[r.callID]; ended {
		s.afterEnd(b, r, line, v)
	} else {
		s.start(b, r, line)
	}
}

// start applies the first event of a call.
func (s *state) start(b *batch, r *rec, line int) {
	t := s.tab
	s.report.Calls++
	var idx uint32
	if n := len(s.free); n > 0 {
		idx, s.free = s.free[n-1], s.free[:n-1]
	} else {
		idx = uint32(len(s.calls))
		s.calls = append(s.calls, liveCall{})
	}
	lc := &s.calls[idx]
	*lc = liveCall{
		id: r.callID, used: true, state: r.state, entered: r.ts, latest: r.ts, userID: r.userID,
		hSess: r.hSess, hSched: r.hSched, hAgent: r.hAgent, hUser: r.hUser, hMeta: r.hMeta,
		session: b.str(r.sess), firstFile: b.file, firstLine: line, lastFile: b.file, lastLine: line,
	}
	lc.add(r.hLine)
	s.byID[r.callID] = idx
	if r.state != t.initial {
		s.at(b, r, line, RuleNoInitiated, fmt.Sprintf("the call's first event is %s, not %s: checking on from %s",
			t.names[r.state], t.names[t.initial], t.states[r.state]))
	}
	s.participant(b, r, line)
	if t.terminal[r.state] {
		s.end(idx)
	}
}

// afterEnd handles an event for a call that has ended.
func (s *state) afterEnd(b *batch, r *rec, line int, v uint64) {
	hs := s.arena.get(v)
	if slices.Contains(hs, r.hLine) {
		s.at(b, r, line, RuleDuplicate, "same JSON object as an earlier event of the call (a redelivery): not applied")
		return
	}
	st := tombState(v)
	s.at(b, r, line, RuleAfterTerminal, fmt.Sprintf("the call already ended as %s: no event may follow", s.tab.names[st]))
	if len(hs) < maxTombHashes {
		off := s.arena.alloc(append(hs[:len(hs):len(hs)], r.hLine))
		s.tombs[r.callID] = tomb(st, len(hs)+1, off)
	}
}

// step applies an event to a live call.
func (s *state) step(b *batch, r *rec, line int, idx uint32) {
	t := s.tab
	lc := &s.calls[idx]
	if lc.has(r.hLine) {
		s.at(b, r, line, RuleDuplicate, "same JSON object as an earlier event of the call (a redelivery): not applied")
		return
	}
	lc.add(r.hLine)
	from, to := lc.state, r.state
	legal := t.legal(from, to)
	if !legal {
		s.at(b, r, line, RuleIllegalTransition, fmt.Sprintf("%s cannot follow %s; expected %s", t.names[to], t.states[from], t.expected[from]))
	}
	if r.ts < lc.latest {
		s.at(b, r, line, RuleTimeBackwards, fmt.Sprintf("timestamp %d is %d s earlier than the call's latest, %d", r.ts, lc.latest-r.ts, lc.latest))
	}
	d := t.timeout[from]
	if legal && t.timeoutOnly(from, to) {
		if t.timeoutOff[from] {
			s.at(b, r, line, RuleEarlyTimeout, fmt.Sprintf("only %s's timeout leads to %s, and it is switched off", t.states[from], t.states[to]))
		} else if due := float64(lc.entered) + d; float64(r.ts) < due-1 {
			s.at(b, r, line, RuleEarlyTimeout, fmt.Sprintf("only %s's %s timeout leads to %s: due at %s (entered at %d), it came %s early",
				t.states[from], secs(d), t.states[to], stamp(due), lc.entered, secs(due-float64(r.ts))))
		}
	}
	if d > 0 && int(to) != t.timeoutTo[from] {
		if due := float64(lc.entered) + d; float64(r.ts) > due+1 {
			s.at(b, r, line, RuleOverdue, fmt.Sprintf("left %s %s after its %s timeout was due at %s (entered at %d): the timeout should have ended it as %s first",
				t.states[from], secs(float64(r.ts)-due), secs(d), stamp(due), lc.entered, t.names[t.timeoutTo[from]]))
		}
	}
	s.identity(b, r, line, lc)
	s.participant(b, r, line)
	if legal && r.ts >= lc.entered {
		s.times[from].add(r.ts - lc.entered)
	}
	lc.state, lc.entered = to, r.ts
	if r.ts > lc.latest {
		lc.latest = r.ts
	}
	lc.lastFile, lc.lastLine = b.file, line
	if t.terminal[to] {
		s.end(idx)
	}
}

// end turns a live call into a tombstone.
func (s *state) end(idx uint32) {
	lc := &s.calls[idx]
	s.outcome[lc.state]++
	hs := lc.hashes()
	if len(hs) > maxTombHashes {
		hs = hs[:maxTombHashes]
	}
	delete(s.byID, lc.id)
	s.tombs[lc.id] = tomb(lc.state, len(hs), s.arena.alloc(hs))
	*lc = liveCall{}
	s.free = append(s.free, idx)
}

func (s *state) identity(b *batch, r *rec, line int, lc *liveCall) {
	d := s.diffBuf[:0]
	if r.hSess != lc.hSess {
		d = append(d, fmt.Sprintf("session_id %q (first %q)", b.str(r.sess), lc.session))
	}
	if r.userID != lc.userID {
		d = append(d, fmt.Sprintf("user_id %d (first %d)", r.userID, lc.userID))
	}
	for _, f := range []struct {
		name      string
		got, want uint64
	}{{"schedule_id", r.hSched, lc.hSched}, {"agent", r.hAgent, lc.hAgent}, {"user", r.hUser, lc.hUser}, {"meta", r.hMeta, lc.hMeta}} {
		if f.got != f.want {
			d = append(d, f.name)
		}
	}
	s.diffBuf = d
	if len(d) == 0 {
		return
	}
	s.at(b, r, line, RuleIdentityMismatch, fmt.Sprintf("differs from the call's first event (%s:%d): %s",
		s.names[lc.firstFile], lc.firstLine, strings.Join(d, ", ")))
}

func (s *state) participant(b *batch, r *rec, line int) {
	t := s.tab
	switch needs := t.participant[r.state]; {
	case needs && r.part == partNone:
		s.at(b, r, line, RuleBadParticipant, fmt.Sprintf("%s needs participant \"user\" or \"agent\"; it has none", t.names[r.state]))
	case needs && r.part == partOther:
		s.at(b, r, line, RuleBadParticipant, fmt.Sprintf("participant must be \"user\" or \"agent\", not %s", b.str(r.partText)))
	case !needs && r.part != partNone:
		val := `"user"`
		switch r.part {
		case partAgent:
			val = `"agent"`
		case partOther:
			val = b.str(r.partText)
		}
		s.at(b, r, line, RuleBadParticipant, fmt.Sprintf("participant %s is only allowed on %s", val, t.partNames))
	}
}

// finish reports the calls left live, then builds the summary.
func (s *state) finish() {
	t := s.tab
	var open []*liveCall
	for i := range s.calls {
		if s.calls[i].used {
			open = append(open, &s.calls[i])
		}
	}
	slices.SortFunc(open, func(a, b *liveCall) int {
		return cmp.Or(cmp.Compare(a.lastFile, b.lastFile), cmp.Compare(a.lastLine, b.lastLine))
	})
	var endFindings []Finding
	var endPos []pos
	keep := s.c.cfg.OnFinding == nil
	for _, lc := range open {
		f := Finding{File: s.names[lc.lastFile], Line: lc.lastLine, CallID: lc.id, Event: t.names[lc.state]}
		d := t.timeout[lc.state]
		if due := float64(lc.entered) + d; d > 0 && due+1 < float64(s.maxTS) {
			f.Rule = RuleOverdue
			f.Message = fmt.Sprintf("still in %s at the end of input, which goes on to %d: its %s timeout was due at %s (entered at %d) and should have ended it as %s",
				t.states[lc.state], s.maxTS, secs(d), stamp(due), lc.entered, t.names[t.timeoutTo[lc.state]])
		} else {
			f.Rule = RuleIncomplete
			f.Message = fmt.Sprintf("has not ended: still in %s since %d at the end of input", t.states[lc.state], lc.entered)
			s.report.Incomplete++
		}
		before := len(s.report.Findings)
		s.add(f, pos{lc.lastFile, lc.lastLine})
		if keep && len(s.report.Findings) > before {
			// Moved aside, to be merged by position below.
			endFindings = append(endFindings, s.report.Findings[before])
			endPos = append(endPos, s.pos[before])
			s.report.Findings, s.pos = s.report.Findings[:before], s.pos[:before]
		}
	}
	if len(endFindings) > 0 {
		s.report.Findings = merge(s.report.Findings, s.pos, endFindings, endPos)
	}
	for i, st := range t.states {
		if t.terminal[i] {
			s.report.Outcomes[string(st)] = s.outcome[i]
		} else if s.times[i].n > 0 {
			s.report.TimeInState[string(st)] = s.times[i].summary()
		}
	}
}

// merge merges two runs of findings sorted by position; a's come first on
// the same line.
func merge(a []Finding, ap []pos, b []Finding, bp []pos) []Finding {
	out := make([]Finding, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || i < len(a) && !less(bp[j], ap[i]) {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	return out
}

func less(p, q pos) bool { return p.file < q.file || p.file == q.file && p.line < q.line }

// secs formats seconds: "30s", "1.5s".
func secs(v float64) string { return stamp(v) + "s" }

// stamp formats a Unix time in seconds, whole or not.
func stamp(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
