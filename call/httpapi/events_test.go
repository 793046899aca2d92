package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

func TestEventsLive(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.create(9) // before the stream: not sent
	s := r.openStream("/v1/events", "")
	r.create(28844)
	r.must(200, "POST", "/v1/calls/28844/ring", "")
	r.must(200, "POST", "/v1/calls/9/cancel", "")
	r.must(200, "POST", "/v1/calls/28844/accept", "")
	r.clock.Advance(4 * time.Second)
	r.must(200, "POST", "/v1/calls/28844/network_failure", `{"participant":"agent"}`)

	assert.Equal(t, sse{id: "2", event: "popin_outgoing_call_initiated", data: seedInitiated}, s.nextEvent())
	for _, want := range []struct{ id, event string }{
		{"3", "popin_outgoing_call_ringing"},
		{"4", "popin_outgoing_call_abandoned"},
		{"5", "popin_outgoing_call_accepted"},
	} {
		m := s.nextEvent()
		assert.Equal(t, want.id, m.id)
		assert.Equal(t, want.event, m.event)
	}
	m := s.nextEvent()
	assert.Equal(t, "6", m.id)
	assert.Equal(t, "popin_outgoing_call_network_failure", m.event)
	var ev struct {
		Event       string `json:"event"`
		CallID      int64  `json:"call_id"`
		Participant string `json:"participant"`
		Timestamp   int64  `json:"timestamp"`
	}
	require.NoError(t, json.Unmarshal([]byte(m.data), &ev))
	assert.Equal(t, m.event, ev.Event)
	assert.Equal(t, int64(28844), ev.CallID)
	assert.Equal(t, "agent", ev.Participant)
	assert.Equal(t, t0.Unix()+4, ev.Timestamp)
}

func TestEventsResume(t *testing.T) {
	r := newRig(t, rigConfig{})
	s := r.openStream("/v1/events", "")
	r.create(1)
	r.must(200, "POST", "/v1/calls/1/ring", "")
	r.must(200, "POST", "/v1/calls/1/accept", "")
	for i := 1; i <= 3; i++ {
		assert.Equal(t, strconv.Itoa(i), s.nextEvent().id)
	}
	s.close()

	// Missed while away.
	r.must(200, "POST", "/v1/calls/1/start", "")
	r.create(2)
	r.must(200, "POST", "/v1/calls/1/end", "")

	ids := func(s *stream, n int) []string {
		var out []string
		for range n {
			out = append(out, s.nextEvent().id)
		}
		return out
	}
	resumed := r.openStream("/v1/events", "3")
	assert.Equal(t, []string{"4", "5", "6"}, ids(resumed, 3), "exactly the missed ones")
	byQuery := r.openStream("/v1/events?last_event_id=5", "")
	assert.Equal(t, []string{"6"}, ids(byQuery, 1))
	headerWins := r.openStream("/v1/events?last_event_id=1", "4")
	assert.Equal(t, []string{"5", "6"}, ids(headerWins, 2), "an EventSource reconnecting sends the header, its URL keeps the query")
	fromStart := r.openStream("/v1/events", "0")
	assert.Equal(t, []string{"1", "2", "3"}, ids(fromStart, 3))

	// And then live, with neither gap nor repeat.
	r.must(200, "POST", "/v1/calls/2/ring", "")
	for _, s := range []*stream{resumed, byQuery, headerWins} {
		m := s.nextEvent()
		assert.Equal(t, "7", m.id)
		assert.Equal(t, "popin_outgoing_call_ringing", m.event)
	}
}

func TestEventsHead(t *testing.T) {
	r := newRig(t, rigConfig{})
	resp := r.do("HEAD", "/v1/events", "")
	assert.Equal(t, 200, resp.status)
	assert.Equal(t, "text/event-stream", resp.header.Get("Content-Type"))
	assert.Contains(t, string(r.must(200, "GET", "/metrics", "")), "callfsm_sse_streams 0\n", "HEAD opens no stream")
}

func TestEventsBadLastEventID(t *testing.T) {
	r := newRig(t, rigConfig{})
	for _, c := range []struct{ header, query, field string }{
		{"x", "", "Last-Event-ID"},
		{"-1", "", "Last-Event-ID"},
		{"18446744073709551615", "", "Last-Event-ID"},
		{"", "1.5", "last_event_id"},
	} {
		t.Run(c.header+c.query, func(t *testing.T) {
			h := http.Header{}
			if c.header != "" {
				h.Set("Last-Event-ID", c.header)
			}
			path := "/v1/events"
			if c.query != "" {
				path += "?last_event_id=" + c.query
			}
			p := requireProblem(t, r.doHeader("GET", path, "", h), "/v1/events", 400, httpapi.TypeInvalidRequest)
			assert.Equal(t, c.field, p.Field)
		})
	}
}

func TestEventsCloseEndsStreams(t *testing.T) {
	r := newRig(t, rigConfig{})
	a := r.openStream("/v1/events", "")
	b := r.openStream("/v1/events", "0")
	r.create(1)
	assert.Equal(t, "1", a.nextEvent().id)
	assert.Equal(t, "1", b.nextEvent().id)

	require.NoError(t, r.api.Close())
	for _, s := range []*stream{a, b} {
		_, err := s.next()
		assert.ErrorIs(t, err, io.EOF, "the stream ended")
	}
	requireProblem(t, r.do("GET", "/v1/events", ""), "/v1/events", 503, httpapi.TypeUnavailable)
}

func TestEventsOutliveServerTimeouts(t *testing.T) {
	const limit = 50 * time.Millisecond
	r := newRig(t, rigConfig{
		api: httpapi.Config{Heartbeat: 5 * time.Millisecond},
		server: func(s *httptest.Server) {
			s.Config.ReadTimeout, s.Config.WriteTimeout = limit, limit
		},
	})
	s := r.openStream("/v1/events", "")
	start := time.Now()
	beats := 0
	for time.Since(start) < 4*limit {
		m, err := s.next()
		require.NoError(t, err, "the stream lives past the server's timeouts")
		require.Equal(t, sse{comment: "heartbeat"}, m)
		beats++
		require.Less(t, beats, 10_000)
	}
	r.create(1)
	assert.Equal(t, "1", s.nextEvent().id)
}

func TestEventsFailingLogEndsStream(t *testing.T) {
	r := newRig(t, rigConfig{})
	s := r.openStream("/v1/events", "")
	require.NoError(t, r.log.Close())
	_, err := s.next()
	assert.ErrorIs(t, err, io.EOF)
	assert.ErrorIs(t, <-r.runErr, eventlog.ErrClosed, "Run reports the log's failure")
	r.runErr <- nil // for the rig's cleanup
}
