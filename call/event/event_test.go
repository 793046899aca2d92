package event_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/event"
)

// The seed's own sample payload (event 1 of the seed document) decodes and
// encodes back to the same JSON, byte for byte once compacted.
func TestSeedPayloadRoundTrip(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed_initiated.json")
	require.NoError(t, err)
	var want bytes.Buffer
	require.NoError(t, json.Compact(&want, seed))

	ev, err := event.Decode(seed)
	require.NoError(t, err)
	assert.Equal(t, "popin_outgoing_call_initiated", ev.Event)
	assert.Equal(t, int64(28844), ev.CallID)
	assert.Nil(t, ev.ScheduleID)
	assert.Nil(t, ev.User.PhoneNumber)

	got, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.Equal(t, want.String(), string(got))
	assert.Equal(t, want.String(), string(ev.AppendJSON(nil)))
}

func TestParticipantBeforeTimestamp(t *testing.T) {
	sched := int64(7)
	phone := "+91 98765 43210"
	ev := event.Event{
		Event: "popin_outgoing_call_network_failure", SessionID: "s", UserID: 1, CallID: 2,
		ScheduleID: &sched, User: event.UserInfo{PhoneNumber: &phone},
		Participant: event.Agent, Timestamp: 3,
	}
	got := string(ev.AppendJSON(nil))
	assert.Contains(t, got, `"schedule_id":7,`)
	assert.Contains(t, got, `"phone_number":"+91 98765 43210",`)
	assert.True(t, strings.HasSuffix(got, `}},"participant":"agent","timestamp":3}`), got)
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, in, field string
	}{
		{"missing event", `{"session_id":"s","user_id":1,"call_id":2,"timestamp":3}`, "event"},
		{"missing session", `{"event":"e","user_id":1,"call_id":2,"timestamp":3}`, "session_id"},
		{"missing user_id", `{"event":"e","session_id":"s","call_id":2,"timestamp":3}`, "user_id"},
		{"null call_id", `{"event":"e","session_id":"s","user_id":1,"call_id":null,"timestamp":3}`, "call_id"},
		{"missing timestamp", `{"event":"e","session_id":"s","user_id":1,"call_id":2}`, "timestamp"},
		{"string call_id", `{"event":"e","session_id":"s","user_id":1,"call_id":"2","timestamp":3}`, "call_id"},
		{"float timestamp", `{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3.5}`, "timestamp"},
		{"nested type", `{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3,"agent":{"email":5}}`, "agent.email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := event.Decode([]byte(tt.in))
			var fe *event.FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
			assert.ErrorIs(t, err, event.ErrInvalid)
		})
	}
}

func TestDecodeRejectsNonObjects(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{`, `null`, `{"event":"e"`} {
		_, err := event.Decode([]byte(in))
		assert.Error(t, err, "input %q", in)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	ev, err := event.Decode([]byte(`{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3,"extra":{"a":[1]}}`))
	require.NoError(t, err)
	assert.Equal(t, int64(2), ev.CallID)
}

// reference is Event without its MarshalJSON, so encoding/json uses reflection.
type reference event.Event

// FuzzAppendJSON holds the hand-written encoder to encoding/json's output for
// any strings, and checks the result decodes back to the same event.
func FuzzAppendJSON(f *testing.F) {
	f.Add("popin_outgoing_call_initiated", "Sasha", "demo@example.com", "+91", "https://x/?a=1&b=<2>", "agent", int64(1771832273), true)
	f.Add("\x00\x1f\"\\\u2028\u2029", "\xff\xfe", "é中", "\t\n\r\b\f", "", "", int64(-1), false)
	f.Fuzz(func(t *testing.T, name, agent, email, phone, url, participant string, ts int64, withPhone bool) {
		ev := event.Event{
			Event: name, SessionID: agent + email, UserID: ts / 3, CallID: ts,
			Agent:       event.AgentInfo{Name: agent, Email: email},
			User:        event.UserInfo{Name: name, Email: email, CountryCode: phone},
			Meta:        event.Meta{Product: event.Product{Name: url, ID: phone, URL: url}},
			Participant: event.Participant(participant), Timestamp: ts,
		}
		if withPhone {
			ev.User.PhoneNumber = &phone
			ev.ScheduleID = &ts
		}
		want, err := json.Marshal(reference(ev))
		require.NoError(t, err)
		got := ev.AppendJSON(nil)
		require.Equal(t, string(want), string(got))

		back, err := event.Decode(got)
		require.NoError(t, err)
		if allValid(name, agent, email, phone, url, participant) {
			require.Equal(t, ev, back, "decode(encode(ev)) != ev")
		}
	})
}

func allValid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// FuzzDecode checks that no input makes the decoder panic, and that whatever
// it accepts re-encodes to JSON that decodes to the same event.
func FuzzDecode(f *testing.F) {
	seed, _ := os.ReadFile("testdata/seed_initiated.json")
	f.Add(seed)
	f.Add([]byte(`{"event":"e","session_id":"s","user_id":1,"call_id":2,"timestamp":3,"participant":"user"}`))
	f.Add([]byte(`{"event":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := event.Decode(data)
		if err != nil {
			return
		}
		enc := ev.AppendJSON(nil)
		back, err := event.Decode(enc)
		require.NoError(t, err, "re-encoded %s", enc)
		require.Equal(t, string(enc), string(back.AppendJSON(nil)))
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	seed, _ := os.ReadFile("testdata/seed_initiated.json")
	ev, _ := event.Decode(seed)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	seed, _ := os.ReadFile("testdata/seed_initiated.json")
	ev, _ := event.Decode(seed)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(reference(ev))
	}
}
