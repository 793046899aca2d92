package event

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// ErrSyntax is the kind of every error Raw.Scan returns for a payload that is
// not one well-formed JSON object.
var ErrSyntax = errors.New("not a JSON object")

// SyntaxError is a payload that is not one well-formed JSON object.
type SyntaxError struct {
	Offset int    // the byte where the problem was found
	Msg    string // what was wrong
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("not a JSON object: %s at byte %d", e.Msg, e.Offset)
}

// Unwrap returns ErrSyntax.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Field names a top-level member of a payload that Raw.Scan recognises.
type Field uint8

// The payload's fields. FieldOther is any member not of the seed's schema.
const (
	FieldOther Field = iota
	FieldEvent
	FieldSessionID
	FieldUserID
	FieldCallID
	FieldScheduleID
	FieldAgent
	FieldUser
	FieldMeta
	FieldParticipant
	FieldTimestamp
	numFields
)

var fieldNames = [numFields]string{
	FieldOther: "", FieldEvent: "event", FieldSessionID: "session_id", FieldUserID: "user_id",
	FieldCallID: "call_id", FieldScheduleID: "schedule_id", FieldAgent: "agent", FieldUser: "user",
	FieldMeta: "meta", FieldParticipant: "participant", FieldTimestamp: "timestamp",
}

// String returns the field's JSON name, or "" for FieldOther.
func (f Field) String() string {
	if f < numFields {
		return fieldNames[f]
	}
	return ""
}

// fieldOf matches a member's key, as written between its quotes, to a Field.
// Keys match exactly; escaped keys take the slow path.
func fieldOf(key []byte) Field {
	switch string(key) {
	case "event":
		return FieldEvent
	case "session_id":
		return FieldSessionID
	case "user_id":
		return FieldUserID
	case "call_id":
		return FieldCallID
	case "schedule_id":
		return FieldScheduleID
	case "agent":
		return FieldAgent
	case "user":
		return FieldUser
	case "meta":
		return FieldMeta
	case "participant":
		return FieldParticipant
	case "timestamp":
		return FieldTimestamp
	}
	return FieldOther
}

// Member is one top-level member of a payload, as written.
type Member struct {
	// Raw is the whole member, from the key's opening quote to the end of
	// the value.
	Raw    []byte
	keyEnd int // index in Raw of the key's closing quote
	valOff int // index in Raw where the value starts
	Field  Field
	// Spaced reports whether Raw holds whitespace outside strings: two
	// members are the same JSON text when their Raw bytes are equal once
	// that whitespace is removed (see AppendCompact).
	Spaced bool
}

// Key returns the member's key between its quotes, escapes as written.
func (m Member) Key() []byte { return m.Raw[1:m.keyEnd] }

// Value returns the member's value as written.
func (m Member) Value() []byte { return m.Raw[m.valOff:] }

// Raw is a payload split by Scan without copying the line: the five fields
// every event has, decoded, and every top-level member as written. A Raw is
// reused from line to line; its slices alias the scanned line (or, for
// strings with escapes, a buffer of the Raw) until the next Scan.
//
// Scan is the replay checker's fast path: it validates the whole line as
// JSON, as encoding/json does (nesting up to 10000 deep, any bytes but
// control characters in strings), but decodes only the fields every event
// needs, and does not allocate on ordinary lines.
type Raw struct {
	Event     []byte // the event name, unescaped
	SessionID []byte // unescaped
	UserID    int64
	CallID    int64
	Timestamp int64
	// Present has bit 1<<Field set for each field present and not null
	// (FieldOther is never set).
	Present uint16

	line    []byte
	members []member // the top-level members, in the order written
	buf     []byte   // unescaped strings
}

// Has reports whether field f is present and not null.
func (r *Raw) Has(f Field) bool { return r.Present&(1<<f) != 0 }

// member is a Member as offsets in the line, so that a Raw's list of them
// holds no pointers: storing one costs no write barrier.
type member struct {
	start, keyEnd, valStart, end int
	field                        Field
	spaced                       bool
}

// NumMembers returns how many top-level members the payload has,
// duplicates included.
func (r *Raw) NumMembers() int { return len(r.members) }

// MemberAt returns the i-th top-level member, in the order written. When a
// key appears twice the last one sets the decoded fields, as with
// encoding/json.
func (r *Raw) MemberAt(i int) Member {
	m := &r.members[i]
	return Member{
		Raw: r.line[m.start:m.end:m.end], keyEnd: m.keyEnd - m.start, valOff: m.valStart - m.start,
		Field: m.field, Spaced: m.spaced,
	}
}

// MemberRaw returns what MemberAt(i) does that is needed to compare members:
// the whole member as written, its field, and whether it holds whitespace.
// It is the fast path: a result in registers, no struct to copy.
func (r *Raw) MemberRaw(i int) (raw []byte, field Field, spaced bool) {
	m := &r.members[i]
	return r.line[m.start:m.end:m.end], m.field, m.spaced
}

// Member returns the last member for f, null included, and whether there
// is one.
func (r *Raw) Member(f Field) (Member, bool) {
	for i := len(r.members) - 1; i >= 0; i-- {
		if r.members[i].field == f {
			return r.MemberAt(i), true
		}
	}
	return Member{}, false
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Scan splits line, which must hold exactly one JSON object (surrounding
// whitespace allowed), into r. Errors, in this order of precedence, as
// Decode's:
//   - *SyntaxError (ErrSyntax): not one well-formed JSON object;
//   - *FieldError (ErrInvalid) with Reason "missing": event, session_id,
//     user_id, call_id or timestamp is absent or null;
//   - *FieldError (ErrInvalid) naming the first of those fields, in the
//     line's order, with a value of the wrong type: event and session_id
//     must be strings; user_id, call_id and timestamp integers (no
//     fraction, no exponent) that fit in an int64.
//
// Unlike encoding/json, keys match the schema's names exactly, not
// regardless of case. Other members may hold any JSON value.
func (r *Raw) Scan(line []byte) error {
	r.Event, r.SessionID = nil, nil
	r.UserID, r.CallID, r.Timestamp = 0, 0, 0
	r.Present = 0
	r.members = r.members[:0]
	r.line = line
	r.buf = r.buf[:0]

	d := line
	var typeErr *FieldError
	i := space(d, 0)
	if i >= len(d) || d[i] != '{' {
		return syntaxAt(d, i)
	}
	i = space(d, i+1)
	if i < len(d) && d[i] == '}' {
		i++
	} else {
		for {
			if i >= len(d) || d[i] != '"' {
				return syntaxAt(d, i)
			}
			start := i
			end, esc := str(d, i+1)
			if end < 0 {
				return syntaxAt(d, -1-end)
			}
			var f Field
			if esc {
				f = fieldOf(r.unquote(d[start : end+1]))
			} else {
				f = fieldOf(d[start+1 : end])
			}
			spaced := false
			j := end + 1
			if j >= len(d) || d[j] != ':' {
				if k := space(d, j); k != j {
					spaced, j = true, k
				}
				if j >= len(d) || d[j] != ':' {
					return syntaxAt(d, j)
				}
			}
			j++
			if k := space(d, j); k != j {
				spaced, j = true, k
			}
			vstart := j
			if j >= len(d) {
				return syntaxAt(d, j)
			}
			switch c := d[j]; {
			case c == 'n':
				if j = literal(d, j, "null"); j < 0 {
					return syntaxAt(d, -1-j)
				}
				r.Present &^= 1 << f
			case (f == FieldEvent || f == FieldSessionID) && c == '"':
				e, esc := str(d, j+1)
				if e < 0 {
					return syntaxAt(d, -1-e)
				}
				v := d[j+1 : e]
				if esc || !isASCII(v) && !utf8.Valid(v) {
					v = r.unquote(d[j : e+1])
				}
				if f == FieldEvent {
					r.Event = v
				} else {
					r.SessionID = v
				}
				r.Present |= 1 << f
				j = e + 1
			case (f == FieldUserID || f == FieldCallID || f == FieldTimestamp) && (c == '-' || '0' <= c && c <= '9'):
				r.Present |= 1 << f
				n, e, integer := fastInt(d, j)
				if e < 0 {
					if e, integer = number(d, j); e < 0 {
						return syntaxAt(d, -1-e)
					}
					if integer {
						n, integer = parseInt(d[j:e])
					}
				}
				if !integer {
					if typeErr == nil {
						typeErr = &FieldError{Field: f.String(), Reason: "want int64, got JSON number " + string(d[j:e])}
					}
				} else if f == FieldUserID {
					r.UserID = n
				} else if f == FieldCallID {
					r.CallID = n
				} else {
					r.Timestamp = n
				}
				j = e
			default:
				if f != FieldOther {
					r.Present |= 1 << f
				}
				if f >= FieldEvent && f <= FieldCallID || f == FieldTimestamp {
					if typeErr == nil {
						want := "int64"
						if f == FieldEvent || f == FieldSessionID {
							want = "string"
						}
						typeErr = &FieldError{Field: f.String(), Reason: "want " + want + ", got JSON " + jsonKind(c)}
					}
				}
				e, fl := skip(d, j, 1)
				if e < 0 {
					if fl&flagDeep != 0 {
						return &SyntaxError{Offset: -1 - e, Msg: "exceeded max depth"}
					}
					return syntaxAt(d, -1-e)
				}
				j, spaced = e, spaced || fl&flagSpaced != 0
			}
			// Written in place: a struct built on the stack and copied
			// stalls on store forwarding.
			if n := len(r.members); n < cap(r.members) {
				r.members = r.members[:n+1]
			} else {
				r.members = append(r.members, member{})
			}
			m := &r.members[len(r.members)-1]
			m.start, m.keyEnd, m.valStart, m.end, m.field, m.spaced = start, end, vstart, j, f, spaced
			i = space(d, j)
			if i >= len(d) {
				return syntaxAt(d, i)
			}
			if d[i] == '}' {
				i++
				break
			}
			if d[i] != ',' {
				return syntaxAt(d, i)
			}
			i = space(d, i+1)
		}
	}
	if i = space(d, i); i < len(d) {
		return syntaxAt(d, i)
	}
	for _, f := range [...]Field{FieldEvent, FieldSessionID, FieldUserID, FieldCallID, FieldTimestamp} {
		if !r.Has(f) {
			return &FieldError{Field: f.String(), Reason: "missing"}
		}
	}
	if typeErr != nil {
		return typeErr
	}
	return nil
}

// unquote decodes a JSON string token (quotes included) as encoding/json
// does, invalid UTF-8 and lone surrogates becoming U+FFFD, into r.buf.
func (r *Raw) unquote(tok []byte) []byte {
	var str string
	// The token was validated by str; Unmarshal cannot fail.
	_ = json.Unmarshal(tok, &str)
	start := len(r.buf)
	r.buf = append(r.buf, str...)
	return r.buf[start:len(r.buf):len(r.buf)]
}

// isASCII reports whether b holds only ASCII, eight bytes at a time.
func isASCII(b []byte) bool {
	var or uint64
	for len(b) >= 8 {
		or |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		or |= uint64(c)
	}
	return or&msb == 0
}

// fastInt parses a plain integer literal of at most 18 digits at i; end is
// -1 for anything else (the general path takes over).
func fastInt(d []byte, i int) (n int64, end int, ok bool) {
	neg := i < len(d) && d[i] == '-'
	if neg {
		i++
	}
	start := i
	for i < len(d) && isDigit(d[i]) {
		n = n*10 + int64(d[i]-'0')
		i++
	}
	if digits := i - start; digits == 0 || digits > 18 || digits > 1 && d[start] == '0' {
		return 0, -1, false
	}
	if i < len(d) && (d[i] == '.' || d[i] == 'e' || d[i] == 'E') {
		return 0, -1, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// parseInt parses a JSON integer literal (already validated) into an int64,
// reporting false when it does not fit.
func parseInt(lit []byte) (int64, bool) {
	if len(lit) < 19 {
		neg := lit[0] == '-'
		if neg {
			lit = lit[1:]
		}
		var n int64
		for _, c := range lit {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, true
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	default:
		return "number"
	}
}

// syntaxAt is the error for the byte at pos (the end of input when pos is
// len(d)).
func syntaxAt(d []byte, pos int) error {
	if pos >= len(d) {
		return &SyntaxError{Offset: len(d), Msg: "unexpected end of JSON input"}
	}
	return &SyntaxError{Offset: pos, Msg: "invalid character " + quoteChar(d[pos])}
}

// quoteChar formats c as encoding/json's errors do.
func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// isSpace is JSON's whitespace.
var isSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// The scanning functions below take the input and a position and return the
// position after what they consumed; a negative result -1-p means the input
// is not valid JSON at byte p (p == len(d): it ended too soon).

// space skips JSON whitespace.
func space(d []byte, i int) int {
	for i < len(d) && isSpace[d[i]] {
		i++
	}
	return i
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// str returns the index of the closing quote of the string whose content
// starts at i, and whether it holds escapes; it validates escapes and
// rejects control characters. Eight bytes are tested at a time.
func str(d []byte, i int) (end int, esc bool) {
	for {
		for i+8 <= len(d) {
			w := binary.LittleEndian.Uint64(d[i:])
			q := w ^ (lsb * '"')
			b := w ^ (lsb * '\\')
			m := (((q - lsb) &^ q) | ((b - lsb) &^ b) | ((w - lsb*0x20) &^ w)) & msb
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto special
			}
			i += 8
		}
		for i < len(d) && d[i] >= 0x20 && d[i] != '"' && d[i] != '\\' {
			i++
		}
		if i >= len(d) {
			return -1 - i, esc
		}
	special:
		switch d[i] {
		case '"':
			return i, esc
		case '\\':
			esc = true
			if i+1 >= len(d) {
				return -1 - len(d), esc
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(d) || !isHex(d[k]) {
						return -1 - k, esc
					}
				}
				i += 6
			default:
				return -1 - (i + 1), esc
			}
		default: // a control character
			return -1 - i, esc
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// literal consumes want (true, false or null) at i.
func literal(d []byte, i int, want string) int {
	for k := 0; k < len(want); k, i = k+1, i+1 {
		if i >= len(d) || d[i] != want[k] {
			return -1 - i
		}
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number consumes a JSON number at i and reports whether it is an integer
// literal (no fraction, no exponent).
func number(d []byte, i int) (end int, integer bool) {
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return -1 - i, false
	case d[i] == '0':
		i++
	case '1' <= d[i] && d[i] <= '9':
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	default:
		return -1 - i, false
	}
	integer = true
	if i < len(d) && d[i] == '.' {
		integer = false
		if i++; i >= len(d) || !isDigit(d[i]) {
			return -1 - i, false
		}
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		integer = false
		if i++; i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return -1 - i, false
		}
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	return i, integer
}

// Flags of skip's result.
const (
	flagSpaced = 1 << iota // whitespace was skipped
	flagDeep               // nesting deeper than encoding/json allows
)

// skip consumes one JSON value of any kind at i, whose container is at
// nesting depth depth (the payload is depth 1).
func skip(d []byte, i, depth int) (int, uint8) {
	if i >= len(d) {
		return -1 - i, 0
	}
	switch d[i] {
	case '"':
		e, _ := str(d, i+1)
		if e < 0 {
			return e, 0
		}
		return e + 1, 0
	case '{':
		return object(d, i, depth+1)
	case '[':
		return array(d, i, depth+1)
	case 't':
		return literal(d, i, "true"), 0
	case 'f':
		return literal(d, i, "false"), 0
	case 'n':
		return literal(d, i, "null"), 0
	}
	e, _ := number(d, i)
	return e, 0
}

// object consumes the object at i, at nesting depth depth.
func object(d []byte, i, depth int) (int, uint8) {
	if depth > maxDepth {
		return -1 - i, flagDeep
	}
	var fl uint8
	i++
	if i < len(d) && isSpace[d[i]] {
		i, fl = space(d, i), flagSpaced
	}
	if i < len(d) && d[i] == '}' {
		return i + 1, fl
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return -1 - i, fl
		}
		e, _ := str(d, i+1)
		if e < 0 {
			return e, fl
		}
		i = e + 1
		if i >= len(d) || d[i] != ':' {
			if k := space(d, i); k != i {
				i, fl = k, fl|flagSpaced
			}
			if i >= len(d) || d[i] != ':' {
				return -1 - i, fl
			}
		}
		i++
		if i < len(d) && isSpace[d[i]] {
			i, fl = space(d, i), fl|flagSpaced
		}
		if i < len(d) && d[i] == '"' { // the common case, inline
			if e, _ = str(d, i+1); e < 0 {
				return e, fl
			}
			i = e + 1
		} else {
			var f uint8
			i, f = skip(d, i, depth)
			if fl |= f; i < 0 {
				return i, fl
			}
		}
		if i < len(d) && isSpace[d[i]] {
			i, fl = space(d, i), fl|flagSpaced
		}
		if i >= len(d) {
			return -1 - i, fl
		}
		switch d[i] {
		case ',':
			i++
			if i < len(d) && isSpace[d[i]] {
				i, fl = space(d, i), fl|flagSpaced
			}
		case '}':
			return i + 1, fl
		default:
			return -1 - i, fl
		}
	}
}

// array consumes the array at i, at nesting depth depth.
func array(d []byte, i, depth int) (int, uint8) {
	if depth > maxDepth {
		return -1 - i, flagDeep
	}
	var fl uint8
	i++
	if i < len(d) && isSpace[d[i]] {
		i, fl = space(d, i), flagSpaced
	}
	if i < len(d) && d[i] == ']' {
		return i + 1, fl
	}
	for {
		var f uint8
		i, f = skip(d, i, depth)
		if fl |= f; i < 0 {
			return i, fl
		}
		if i < len(d) && isSpace[d[i]] {
			i, fl = space(d, i), fl|flagSpaced
		}
		if i >= len(d) {
			return -1 - i, fl
		}
		switch d[i] {
		case ',':
			i++
			if i < len(d) && isSpace[d[i]] {
				i, fl = space(d, i), fl|flagSpaced
			}
		case ']':
			return i + 1, fl
		default:
			return -1 - i, fl
		}
	}
}

// AppendCompact appends src, valid JSON (a value, or a member as in
// Member.Raw), to dst without the whitespace outside its strings.
func AppendCompact(dst, src []byte) []byte {
	inString := false
	start := 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case isSpace[c]:
			dst = append(dst, src[start:i]...)
			start = i + 1
		}
	}
	return append(dst, src[start:]...)
}
