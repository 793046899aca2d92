package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/event"
)

func seedLine(t testing.TB) []byte {
	t.Helper()
	seed, err := os.ReadFile("testdata/seed_initiated.json")
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, seed))
	return b.Bytes()
}

func TestScanSeed(t *testing.T) {
	t.Parallel()
	seed, err := os.ReadFile("testdata/seed_initiated.json")
	require.NoError(t, err)
	for name, line := range map[string][]byte{"pretty": seed, "compact": seedLine(t)} {
		t.Run(name, func(t *testing.T) {
			var r event.Raw
			require.NoError(t, r.Scan(line))
			assert.Equal(t, "popin_outgoing_call_initiated", string(r.Event))
			assert.Equal(t, "bf0b3a76-0596-4602-a2c3-43e0db01b991", string(r.SessionID))
			assert.Equal(t, int64(58559), r.UserID)
			assert.Equal(t, int64(28844), r.CallID)
			assert.Equal(t, int64(1771832273), r.Timestamp)
			assert.True(t, r.Has(event.FieldCallID))
			assert.False(t, r.Has(event.FieldScheduleID), "null is absent")
			assert.False(t, r.Has(event.FieldParticipant))
			var keys []string
			for i := range r.NumMembers() {
				m := r.MemberAt(i)
				keys = append(keys, m.Field.String())
				assert.Equal(t, name == "pretty", m.Spaced, "member %s", m.Key())
			}
			assert.Equal(t, []string{"event", "session_id", "user_id", "call_id", "schedule_id", "agent", "user", "meta", "timestamp"}, keys)
			m, ok := r.Member(event.FieldMeta)
			require.True(t, ok)
			assert.Equal(t, `"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}}`,
				string(event.AppendCompact(nil, m.Raw)))
			m, ok = r.Member(event.FieldScheduleID)
			require.True(t, ok)
			assert.Equal(t, "null", string(m.Value()))
		})
	}
}

func TestScanErrors(t *testing.T) {
	t.Parallel()
	const ok = `"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3`
	tests := []struct {
		name, in string
		field    string // a *FieldError on this field, or
		reason   string
		syntax   string // a *SyntaxError with this message
	}{
		{name: "empty", in: ``, syntax: "unexpected end of JSON input at byte 0"},
		{name: "array", in: `[]`, syntax: "invalid character '[' at byte 0"},
		{name: "string", in: `"x"`, syntax: `invalid character '"' at byte 0`},
		{name: "null", in: ` null`, syntax: "invalid character 'n' at byte 1"},
		{name: "unterminated", in: `{` + ok, syntax: "unexpected end of JSON input at byte 67"},
		{name: "trailing", in: `{` + ok + `} x`, syntax: "invalid character 'x' at byte 69"},
		{name: "two objects", in: `{` + ok + `}{}`, syntax: "invalid character '{' at byte 68"},
		{name: "bad escape", in: `{"a":"\x"}`, syntax: "invalid character 'x' at byte 7"},
		{name: "control char", in: "{\"a\":\"\x01\"}", syntax: `invalid character '\x01' at byte 6`},
		{name: "bad number", in: `{"a":01}`, syntax: "invalid character '1' at byte 6"},
		{name: "bad literal", in: `{"a":nul}`, syntax: "invalid character '}' at byte 8"},
		{name: "nested unterminated", in: `{"a":{"b":[1,2}}`, syntax: "invalid character '}' at byte 14"},
		{name: "trailing comma", in: `{"a":1,}`, syntax: "invalid character '}' at byte 7"},
		{name: "too deep", in: `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, syntax: "exceeded max depth at byte 10004"},
		{name: "missing event", in: `{"session_id":"s","user_id":1,"call_id":2,"timestamp":3}`, field: "event", reason: "missing"},
		{name: "null call_id", in: `{"event":"e","session_id":"s","user_id":1,"call_id":null,"timestamp":3}`, field: "call_id", reason: "missing"},
		{name: "last null wins", in: `{` + ok + `,"call_id":null}`, field: "call_id", reason: "missing"},
		{name: "missing before type", in: `{"event":1,"session_id":"s","user_id":1,"call_id":2}`, field: "timestamp", reason: "missing"},
		{name: "string call_id", in: `{"event":"e","session_id":"s","user_id":1,"call_id":"2","timestamp":3}`, field: "call_id", reason: "want int64, got JSON string"},
		{name: "float timestamp", in: `{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3.5}`, field: "timestamp", reason: "want int64, got JSON number 3.5"},
		{name: "exponent", in: `{"event":"e","session_id":"s","user_id":1e2,"call_id":2,"timestamp":3}`, field: "user_id", reason: "want int64, got JSON number 1e2"},
		{name: "overflow", in: `{"event":"e","session_id":"s","user_id":9223372036854775808,"call_id":2,"timestamp":3}`, field: "user_id", reason: "want int64, got JSON number 9223372036854775808"},
		{name: "event object", in: `{"event":{},"session_id":"s","user_id":1,"call_id":2,"timestamp":3}`, field: "event", reason: "want string, got JSON object"},
		{name: "first type error", in: `{"event":"e","session_id":true,"user_id":[],"call_id":2,"timestamp":3}`, field: "session_id", reason: "want string, got JSON bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r event.Raw
			err := r.Scan([]byte(tt.in))
			require.Error(t, err)
			if tt.syntax != "" {
				var se *event.SyntaxError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, "not a JSON object: "+tt.syntax, err.Error())
				assert.ErrorIs(t, err, event.ErrSyntax)
				assert.False(t, json.Valid([]byte(tt.in)) && strings.HasPrefix(tt.in, "{"), "encoding/json agrees it is not an object")
				return
			}
			var fe *event.FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
			assert.Equal(t, tt.reason, fe.Reason)
			assert.ErrorIs(t, err, event.ErrInvalid)
		})
	}
}

func TestScanEdges(t *testing.T) {
	t.Parallel()
	var r event.Raw
	in := " \t{ \"event\" : \"a\\u0062c\\n\", \"session_id\":\"\xff\", \"user_id\":-0, \"call_id\":-9223372036854775808," +
		"\"timestamp\":0, \"\\u0063all_id\":7, \"x\":[{},[],{\"y\":[true,false,null,-1.5e+3]}]} \r\n"
	require.NoError(t, r.Scan([]byte(in)))
	assert.Equal(t, "abc\n", string(r.Event))
	assert.Equal(t, "\uFFFD", string(r.SessionID), "invalid UTF-8 becomes U+FFFD, as with encoding/json")
	assert.Equal(t, int64(7), r.CallID, "an escaped key is the same key; the last one wins")
	assert.Equal(t, event.FieldCallID, r.MemberAt(5).Field)
	assert.Equal(t, `\u0063all_id`, string(r.MemberAt(5).Key()))
	assert.Equal(t, `"x":[{},[],{"y":[true,false,null,-1.5e+3]}]`, string(event.AppendCompact(nil, r.MemberAt(6).Raw)))
	assert.False(t, r.MemberAt(6).Spaced)
	assert.True(t, r.MemberAt(0).Spaced)
}

func TestScanDoesNotAllocate(t *testing.T) {
	line := seedLine(t)
	var r event.Raw
	require.NoError(t, r.Scan(line))
	allocs := testing.AllocsPerRun(100, func() { _ = r.Scan(line) })
	assert.Zero(t, allocs)
}

// member is one top-level member as encoding/json's Decoder sees it.
type member struct {
	key string
	raw json.RawMessage
}

// members splits an object with encoding/json, in document order, or
// reports that it is not one well-formed object.
func members(data []byte) ([]member, bool) {
	if !json.Valid(data) || !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		out = append(out, member{tok.(string), raw})
	}
	return out, true
}

// FuzzScan holds the fast scanner to encoding/json: both accept the same
// objects, find the same members, and decode the same fields, or fail the
// same way.
func FuzzScan(f *testing.F) {
	f.Add(seedLine(f))
	seed, _ := os.ReadFile("testdata/seed_initiated.json")
	f.Add(seed)
	f.Add([]byte(`{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3,"participant":"user"}`))
	f.Add([]byte(`{"event":1,"call_id":"x","user_id":1.5,"timestamp":null,"session_id":"\u00e9"}`))
	f.Add([]byte(`{"event":"e","event":"f","session_id":"s\ud800","user_id":-1,"call_id":99999999999999999999,"timestamp":3}`))
	f.Add([]byte(`{"a":[1,{"b":"\\"},[]],"c":{"d":-0.5E-7}}`))
	var reused event.Raw // across inputs, as the checker's workers do
	f.Fuzz(func(t *testing.T, data []byte) {
		var r event.Raw
		err := r.Scan(data)
		rerr := reused.Scan(data)
		require.Equal(t, fmt.Sprint(err), fmt.Sprint(rerr), "a reused Raw")
		require.Equal(t, r.NumMembers(), reused.NumMembers())
		for i := range r.NumMembers() {
			require.Equal(t, r.MemberAt(i), reused.MemberAt(i))
		}
		want, ok := members(data)
		require.Equal(t, ok, !errors.Is(err, event.ErrSyntax), "syntax: encoding/json says object=%v, Scan says %v", ok, err)
		if !ok {
			return
		}
		require.Equal(t, len(want), r.NumMembers())
		last := map[string]json.RawMessage{}
		var typeErr string
		for i, m := range want {
			got := r.MemberAt(i)
			require.Equal(t, string(compact(t, m.raw)), string(event.AppendCompact(nil, got.Value())), "member %d", i)
			if !got.Spaced {
				require.Equal(t, string(event.AppendCompact(nil, got.Raw)), string(got.Raw))
			}
			if got.Field == event.FieldOther {
				require.NotContains(t, []string{"event", "session_id", "user_id", "call_id", "schedule_id", "agent", "user", "meta", "participant", "timestamp"}, m.key)
			} else {
				require.Equal(t, m.key, got.Field.String())
			}
			last[m.key] = m.raw
			if typeErr == "" && string(m.raw) != "null" && !wellTyped(m.key, m.raw) {
				typeErr = m.key
			}
		}
		for _, name := range []string{"event", "session_id", "user_id", "call_id", "timestamp"} {
			if raw, ok := last[name]; !ok || string(raw) == "null" {
				var fe *event.FieldError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, name, fe.Field)
				require.Equal(t, "missing", fe.Reason)
				return
			}
		}
		if typeErr != "" {
			var fe *event.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, typeErr, fe.Field)
			return
		}
		require.NoError(t, err)
		var ev event.Event
		require.NoError(t, json.Unmarshal(last["event"], &ev.Event))
		require.NoError(t, json.Unmarshal(last["session_id"], &ev.SessionID))
		require.NoError(t, json.Unmarshal(last["user_id"], &ev.UserID))
		require.NoError(t, json.Unmarshal(last["call_id"], &ev.CallID))
		require.NoError(t, json.Unmarshal(last["timestamp"], &ev.Timestamp))
		assert.Equal(t, ev.Event, string(r.Event))
		assert.Equal(t, ev.SessionID, string(r.SessionID))
		assert.Equal(t, ev.UserID, r.UserID)
		assert.Equal(t, ev.CallID, r.CallID)
		assert.Equal(t, ev.Timestamp, r.Timestamp)
	})
}

func compact(t *testing.T, raw []byte) []byte {
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, raw))
	return b.Bytes()
}

// wellTyped reports whether encoding/json decodes raw into the field's Go
// type (other fields take anything).
func wellTyped(key string, raw json.RawMessage) bool {
	switch key {
	case "event", "session_id":
		var s string
		return json.Unmarshal(raw, &s) == nil
	case "user_id", "call_id", "timestamp":
		var n int64
		return json.Unmarshal(raw, &n) == nil
	}
	return true
}

func BenchmarkScan(b *testing.B) {
	line := seedLine(b)
	var r event.Raw
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Scan(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	line := seedLine(b)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Decode(line); err != nil {
			b.Fatal(err)
		}
	}
}
