package check

import (
	"bytes"
	"errors"
	"hash/maphash"

	"github.com/callfsm/callfsm/call/event"
)

// Kinds of decoded line.
const (
	kindEvent     uint8 = iota // an event, possibly of an unknown name
	kindMalformed              // not a JSON object, or a field of the wrong type
	kindMissing                // a required field is absent
	kindLong                   // longer than MaxLineBytes
)

// Participants of a decoded event.
const (
	partNone  uint8 = iota // absent or null
	partUser               // "user"
	partAgent              // "agent"
	partOther              // any other value, in rec.partText
)

// span is a string in batch.text.
type span struct{ off, n uint32 }

// rec is one non-blank line, decoded by a worker for the consumer. It holds
// no pointers, so that batches of them cost the garbage collector nothing.
type rec struct {
	line   uint32 // from 1 within the batch
	kind   uint8
	state  uint8 // the event's state, noState when its name is unknown
	part   uint8
	hasID  bool  // callID was read
	callID int64 //
	userID int64 //
	ts     int64 // the timestamp; for kindLong, the line's length
	// Hashes of the members (key and value, whitespace outside strings
	// removed) for the identity rule, and of the whole line for duplicate:
	// the sum of its members', so that member order does not matter.
	hSess, hSched, hAgent, hUser, hMeta, hLine uint64
	event                                      span  // the event name, for kindMalformed/kindMissing or an unknown one
	sess                                       span  // session_id
	partText                                   span  // participant's JSON, for partOther
	err                                        int32 // index in batch.errs, for kindMalformed and kindMissing
}

var bom = []byte("\xEF\xBB\xBF")

// worker decodes batches; each decoding goroutine has its own.
type worker struct {
	c       *Checker
	raw     event.Raw
	scratch []byte
	null    [4]uint64 // hashes of absent identity members, as if null: schedule_id, agent, user, meta
}

func newWorker(c *Checker) *worker {
	w := &worker{c: c}
	for i, m := range []string{`"schedule_id":null`, `"agent":null`, `"user":null`, `"meta":null`} {
		w.null[i] = maphash.String(c.seed, m)
	}
	return w
}

// decode splits b.data into lines and decodes each non-blank one.
func (w *worker) decode(b *batch) {
	b.recs, b.text, b.errs = b.recs[:0], b.text[:0], b.errs[:0]
	if b.long {
		b.lines = 1
		b.recs = append(b.recs, rec{line: 1, kind: kindLong, ts: b.longBytes})
		return
	}
	max := w.c.cfg.MaxLineBytes
	data := b.data
	line := 0
	for len(data) > 0 {
		var ln []byte
		if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
			ln, data = data[:nl], data[nl+1:]
		} else {
			ln, data = data, nil
		}
		line++
		if line == 1 && b.fileStart {
			ln = bytes.TrimPrefix(ln, bom)
		}
		if n := len(ln); n > 0 && ln[n-1] == '\r' {
			ln = ln[:n-1]
		}
		if blank(ln) {
			continue
		}
		if len(ln) > max {
			b.recs = append(b.recs, rec{line: uint32(line), kind: kindLong, ts: int64(len(ln))})
			continue
		}
		// Decoded in place: a rec built elsewhere and copied stalls on
		// store forwarding.
		if n := len(b.recs); n < cap(b.recs) {
			b.recs = b.recs[:n+1]
		} else {
			b.recs = append(b.recs, rec{})
		}
		w.line(b, &b.recs[len(b.recs)-1], ln, uint32(line))
	}
	b.lines = line
}

func blank(ln []byte) bool {
	for _, c := range ln {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// text copies s into b.text.
func (b *batch) addText(s []byte) span {
	sp := span{off: uint32(len(b.text)), n: uint32(len(s))}
	b.text = append(b.text, s...)
	return sp
}

func (b *batch) str(s span) string { return string(b.text[s.off : s.off+s.n]) }

// line decodes one line into out.
func (w *worker) line(b *batch, out *rec, ln []byte, line uint32) {
	r := &w.raw
	*out = rec{line: line}
	if err := r.Scan(ln); err != nil {
		out.kind = kindMalformed
		var fe *event.FieldError
		if errors.As(err, &fe) {
			if fe.Reason == "missing" {
				out.kind = kindMissing
			}
			if fe.Field != "call_id" && r.Has(event.FieldCallID) {
				out.callID, out.hasID = r.CallID, true
			}
			if fe.Field != "event" && r.Has(event.FieldEvent) {
				out.event = b.addText(r.Event)
			}
		}
		out.err = int32(len(b.errs))
		b.errs = append(b.errs, err)
		return
	}
	out.kind = kindEvent
	out.callID, out.hasID, out.userID, out.ts = r.CallID, true, r.UserID, r.Timestamp
	st, ok := w.c.tab.byName[string(r.Event)]
	if !ok {
		st = noState
		out.event = b.addText(r.Event)
	}
	out.state = st
	out.sess = b.addText(r.SessionID)
	out.hSched, out.hAgent, out.hUser, out.hMeta = w.null[0], w.null[1], w.null[2], w.null[3]
	var part []byte
	partAt := -1
	for i := range r.NumMembers() {
		raw, field, spaced := r.MemberRaw(i)
		var h uint64
		if spaced {
			w.scratch = event.AppendCompact(w.scratch[:0], raw)
			h = maphash.Bytes(w.c.seed, w.scratch)
		} else {
			h = maphash.Bytes(w.c.seed, raw)
		}
		out.hLine += h
		switch field {
		case event.FieldSessionID:
			out.hSess = h
		case event.FieldScheduleID:
			out.hSched = h
		case event.FieldAgent:
			out.hAgent = h
		case event.FieldUser:
			out.hUser = h
		case event.FieldMeta:
			out.hMeta = h
		case event.FieldParticipant:
			partAt = i
		}
	}
	if partAt >= 0 {
		part = r.MemberAt(partAt).Value()
	}
	switch {
	case part == nil || string(part) == "null":
		out.part = partNone
	case string(part) == `"user"`:
		out.part = partUser
	case string(part) == `"agent"`:
		out.part = partAgent
	default:
		out.part = partOther
		out.partText = b.addText(part)
	}
}
