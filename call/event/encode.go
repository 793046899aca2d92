package event

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends e's compact JSON encoding to dst and returns the
// extended buffer. It is the allocation-free path the JSON Lines sinks use;
// its bytes equal encoding/json's for the same struct (a fuzz test holds
// them together).
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"event":`...)
	dst = appendString(dst, e.Event)
	dst = append(dst, `,"session_id":`...)
	dst = appendString(dst, e.SessionID)
	dst = append(dst, `,"user_id":`...)
	dst = strconv.AppendInt(dst, e.UserID, 10)
	dst = append(dst, `,"call_id":`...)
	dst = strconv.AppendInt(dst, e.CallID, 10)
	dst = append(dst, `,"schedule_id":`...)
	if e.ScheduleID == nil {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, *e.ScheduleID, 10)
	}
	dst = append(dst, `,"agent":{"name":`...)
	dst = appendString(dst, e.Agent.Name)
	dst = append(dst, `,"email":`...)
	dst = appendString(dst, e.Agent.Email)
	dst = append(dst, `},"user":{"name":`...)
	dst = appendString(dst, e.User.Name)
	dst = append(dst, `,"email":`...)
	dst = appendString(dst, e.User.Email)
	dst = append(dst, `,"phone_number":`...)
	if e.User.PhoneNumber == nil {
		dst = append(dst, "null"...)
	} else {
		dst = appendString(dst, *e.User.PhoneNumber)
	}
	dst = append(dst, `,"country_code":`...)
	dst = appendString(dst, e.User.CountryCode)
	dst = append(dst, `},"meta":{"product":{"name":`...)
	dst = appendString(dst, e.Meta.Product.Name)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, e.Meta.Product.ID)
	dst = append(dst, `,"url":`...)
	dst = appendString(dst, e.Meta.Product.URL)
	dst = append(dst, `}}`...)
	if e.Participant != "" {
		dst = append(dst, `,"participant":`...)
		dst = appendString(dst, string(e.Participant))
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, e.Timestamp, 10)
	return append(dst, '}')
}

const hex = "0123456789abcdef"

// safeASCII[b] is true for the ASCII bytes a JSON string holds unescaped
// (encoding/json's HTML-safe set). Bytes of 0x80 and above are false: they
// take the UTF-8 path.
var safeASCII = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendString appends s as a JSON string, escaped exactly as encoding/json
// does with HTML escaping on: control characters, quote, backslash, <, >, &,
// U+2028, U+2029, and invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if safeASCII[b] {
			i++
			continue
		}
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
