package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/httpapi"
)

// seedInitiated is the seed's own sample payload.
const seedInitiated = `{"event":"popin_outgoing_call_initiated","session_id":"bf0b3a76-0596-4602-a2c3-43e0db01b991","user_id":58559,"call_id":28844,"schedule_id":null,"agent":{"name":"Sasha","email":"menonaiswarya0@gmail.com"},"user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}},"timestamp":1771832273}`

func TestCreate(t *testing.T) {
	r := newRig(t, rigConfig{})
	resp := r.do("POST", "/v1/calls", seedBody(28844))
	require.Equal(t, http.StatusCreated, resp.status, "%s", resp.body)
	assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
	assert.Equal(t, "/v1/calls/28844", resp.header.Get("Location"))
	assert.JSONEq(t, `{"call_id":28844,"session_id":"`+sessionID+`","state":"initiated"}`, string(resp.body))

	// The call's first event is the seed's payload, byte for byte.
	var got struct{ Events []json.RawMessage }
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls/28844", ""), &got))
	require.Len(t, got.Events, 1)
	assert.Equal(t, seedInitiated, string(got.Events[0]))
}

func TestCreateOptionalFields(t *testing.T) {
	r := newRig(t, rigConfig{engine: call.Config{NewSessionID: func() string { return "made-by-engine" }}})
	body := r.must(http.StatusCreated, "POST", "/v1/calls", `{"call_id":1,"user_id":0}`)
	assert.JSONEq(t, `{"call_id":1,"session_id":"made-by-engine","state":"initiated"}`, string(body))

	body = r.must(http.StatusCreated, "POST", "/v1/calls",
		`{"call_id":2,"user_id":5,"schedule_id":77,"session_id":"mine","user":{"phone_number":"+91 98"}}`)
	assert.JSONEq(t, `{"call_id":2,"session_id":"mine","state":"initiated"}`, string(body))
	var got struct{ Events []json.RawMessage }
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls/2", ""), &got))
	assert.JSONEq(t, `{"event":"popin_outgoing_call_initiated","session_id":"mine","user_id":5,"call_id":2,"schedule_id":77,
		"agent":{"name":"","email":""},"user":{"name":"","email":"","phone_number":"+91 98","country_code":""},
		"meta":{"product":{"name":"","id":"","url":""}},"timestamp":1771832273}`, string(got.Events[0]))
}

func TestCreateErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		body   string
		status int
		typ    string
		field  string
		detail string // a part of the problem's detail
	}{
		{"empty body", "", 400, httpapi.TypeInvalidRequest, "", "empty"},
		{"malformed", `{"call_id":1,`, 400, httpapi.TypeInvalidRequest, "", "malformed JSON"},
		{"not JSON", `call_id=1`, 400, httpapi.TypeInvalidRequest, "", "malformed JSON"},
		{"trailing data", `{"call_id":1,"user_id":1}{}`, 400, httpapi.TypeInvalidRequest, "", "more data after the object"},
		{"array", `[1]`, 400, httpapi.TypeInvalidRequest, "", "want a JSON object, got array"},
		{"call_id missing", `{"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "call_id: missing"},
		{"call_id null", `{"call_id":null,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "missing"},
		{"call_id string", `{"call_id":"1","user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "call_id: want integer, got string"},
		{"call_id fraction", `{"call_id":1.5,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "want integer, got number 1.5"},
		{"call_id overflow", `{"call_id":99999999999999999999,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "want integer"},
		{"call_id zero", `{"call_id":0,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "positive integer, got 0"},
		{"call_id negative", `{"call_id":-4,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "call_id", "positive integer, got -4"},
		{"user_id missing", `{"call_id":1}`, 400, httpapi.TypeInvalidRequest, "user_id", "user_id: missing"},
		{"user_id bool", `{"call_id":1,"user_id":true}`, 400, httpapi.TypeInvalidRequest, "user_id", "want integer, got bool"},
		{"user_id negative", `{"call_id":1,"user_id":-1}`, 400, httpapi.TypeInvalidRequest, "user_id", "must not be negative"},
		{"schedule_id string", `{"call_id":1,"user_id":1,"schedule_id":"x"}`, 400, httpapi.TypeInvalidRequest, "schedule_id", "want integer, got string"},
		{"session_id number", `{"call_id":1,"user_id":1,"session_id":5}`, 400, httpapi.TypeInvalidRequest, "session_id", "want string, got number"},
		{"agent string", `{"call_id":1,"user_id":1,"agent":"Sasha"}`, 400, httpapi.TypeInvalidRequest, "agent", "want object, got string"},
		{"agent.email number", `{"call_id":1,"user_id":1,"agent":{"email":5}}`, 400, httpapi.TypeInvalidRequest, "agent.email", "want string, got number"},
		{"user.phone_number number", `{"call_id":1,"user_id":1,"user":{"phone_number":5}}`, 400, httpapi.TypeInvalidRequest, "user.phone_number", "want string"},
		{"meta.product.url array", `{"call_id":1,"user_id":1,"meta":{"product":{"url":[]}}}`, 400, httpapi.TypeInvalidRequest, "meta.product.url", "want string, got array"},
		{"unknown field", `{"call_id":1,"user_id":1,"sesion_id":"x"}`, 400, httpapi.TypeInvalidRequest, "sesion_id", "unknown field"},
		{"unknown nested field", `{"call_id":1,"user_id":1,"meta":{"product":{"sku":"x"}}}`, 400, httpapi.TypeInvalidRequest, "meta.product.sku", "unknown field"},
		{"seed payload's event member", `{"event":"popin_outgoing_call_initiated","call_id":1,"user_id":1}`, 400, httpapi.TypeInvalidRequest, "event", "unknown field"},
		{"too large", `{"session_id":"` + strings.Repeat("x", 65<<10) + `"}`, 413, "about:blank", "", "larger than 65536 bytes"},
		{"live call_id", seedBody(9), 409, httpapi.TypeCallExists, "", "call 9 is live"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, rigConfig{})
			r.create(9)
			p := requireProblem(t, r.do("POST", "/v1/calls", c.body), "/v1/calls", c.status, c.typ)
			assert.Equal(t, c.field, p.Field)
			assert.Contains(t, p.Detail, c.detail)
			assert.Equal(t, 1, r.eng.Len(), "no call was created")
		})
	}
}

func TestCreateReusesEndedCallID(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.create(5)
	r.must(http.StatusOK, "POST", "/v1/calls/5/cancel", "")
	r.create(5)
	var got struct {
		State  string
		Live   bool
		Events []struct{ Event string }
	}
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls/5", ""), &got))
	assert.Equal(t, "initiated", got.State)
	assert.True(t, got.Live)
	require.Len(t, got.Events, 1, "the new call's history starts afresh")
}

// to lists the triggers that bring a new call to a state.
var to = map[string][]string{
	"initiated": nil,
	"ringing":   {"ring"},
	"accepted":  {"ring", "accept"},
	"started":   {"ring", "accept", "start"},
	"ended":     {"ring", "start", "end"},
}

func TestTriggers(t *testing.T) {
	for _, c := range []struct {
		name    string
		from    string
		path    string // after /v1/calls/
		body    string
		status  int
		state   string // the new state, or the problem's
		typ     string // for problems
		field   string
		allowed []string
	}{
		{"ring", "initiated", "1/ring", "", 200, "ringing", "", "", nil},
		{"ring, empty object", "initiated", "1/ring", `{}`, 200, "ringing", "", "", nil},
		{"ring, blank body", "initiated", "1/ring", " \n", 200, "ringing", "", "", nil},
		{"accept", "ringing", "1/accept", "", 200, "accepted", "", "", nil},
		{"start auto-answer", "ringing", "1/start", "", 200, "started", "", "", nil},
		{"start", "accepted", "1/start", "", 200, "started", "", "", nil},
		{"end", "started", "1/end", "", 200, "successful", "", "", nil},
		{"cancel", "initiated", "1/cancel", "", 200, "abandoned", "", "", nil},
		{"decline", "ringing", "1/decline", "", 200, "declined", "", "", nil},
		{"busy", "initiated", "1/busy", "", 200, "busy", "", "", nil},
		{"unavailable", "initiated", "1/unavailable", "", 200, "customer_unavailable", "", "", nil},
		{"network_failure user", "accepted", "1/network_failure", `{"participant":"user"}`, 200, "network_failure", "", "", nil},
		{"network_failure agent", "started", "1/network_failure", `{"participant":"agent"}`, 200, "network_failure", "", "", nil},

		{"illegal", "initiated", "1/end", "", 409, "initiated", httpapi.TypeIllegalTransition, "", []string{"busy", "cancel", "ring", "unavailable"}},
		{"illegal network_failure", "ringing", "1/network_failure", `{"participant":"user"}`, 409, "ringing", httpapi.TypeIllegalTransition, "", []string{"accept", "cancel", "decline", "start"}},
		{"ended", "ended", "1/ring", "", 409, "successful", httpapi.TypeCallEnded, "", []string{}},
		{"unknown call", "initiated", "2/ring", "", 404, "", httpapi.TypeUnknownCall, "", nil},
		{"unknown trigger", "initiated", "1/dance", "", 404, "", "about:blank", "", nil},
		{"timeout is the engine's", "ringing", "1/timeout", "", 404, "", "about:blank", "", nil},
		{"call_id not a number", "initiated", "abc/ring", "", 400, "", httpapi.TypeInvalidRequest, "call_id", nil},
		{"call_id zero", "initiated", "0/ring", "", 400, "", httpapi.TypeInvalidRequest, "call_id", nil},
		{"call_id negative", "initiated", "-1/ring", "", 400, "", httpapi.TypeInvalidRequest, "call_id", nil},
		{"participant missing", "accepted", "1/network_failure", "", 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"participant null", "accepted", "1/network_failure", `{"participant":null}`, 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"participant wrong", "accepted", "1/network_failure", `{"participant":"bob"}`, 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"participant ill-typed", "accepted", "1/network_failure", `{"participant":1}`, 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"participant not taken", "initiated", "1/ring", `{"participant":"user"}`, 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		// The request is checked before the call's state.
		{"participant missing, illegal anyway", "ringing", "1/network_failure", "", 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"participant not taken, illegal anyway", "accepted", "1/ring", `{"participant":"agent"}`, 400, "", httpapi.TypeInvalidRequest, "participant", nil},
		{"unknown member", "initiated", "1/ring", `{"reason":"x"}`, 400, "", httpapi.TypeInvalidRequest, "reason", nil},
		{"malformed", "initiated", "1/ring", `{`, 400, "", httpapi.TypeInvalidRequest, "", nil},
		{"too large", "initiated", "1/ring", strings.Repeat(" ", 65<<10), 413, "", "about:blank", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, rigConfig{})
			r.create(1)
			for _, tr := range to[c.from] {
				r.must(http.StatusOK, "POST", "/v1/calls/1/"+tr, "")
			}
			path := "/v1/calls/" + c.path
			resp := r.do("POST", path, c.body)
			if c.typ == "" {
				require.Equal(t, c.status, resp.status, "%s", resp.body)
				assert.Equal(t, "application/json", resp.header.Get("Content-Type"))
				assert.JSONEq(t, `{"call_id":1,"state":"`+c.state+`"}`, string(resp.body))
				return
			}
			p := requireProblem(t, resp, path, c.status, c.typ)
			assert.Equal(t, c.field, p.Field)
			assert.Equal(t, c.state, p.State)
			if c.allowed == nil {
				assert.Nil(t, p.Allowed, "no allowed member")
			} else {
				require.NotNil(t, p.Allowed, "the allowed member is there, even empty")
				assert.Equal(t, c.allowed, *p.Allowed)
				assert.Contains(t, p.Detail, c.state)
			}
		})
	}
}

func TestEmitFailureIs503(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.create(1)
	r.log.setFail(errors.New("disk full"))
	p := requireProblem(t, r.do("POST", "/v1/calls/1/ring", ""), "/v1/calls/1/ring", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "disk full")
	p = requireProblem(t, r.do("POST", "/v1/calls", seedBody(2)), "/v1/calls", 503, httpapi.TypeUnavailable)
	assert.Contains(t, p.Detail, "nothing was applied")
	r.log.setFail(nil)
	c, err := r.eng.Lookup(1)
	require.NoError(t, err)
	assert.Equal(t, "initiated", string(c.State()), "nothing applied")
	r.must(http.StatusOK, "POST", "/v1/calls/1/ring", "")
}

func TestClosedEngineIs503(t *testing.T) {
	r := newRig(t, rigConfig{})
	r.create(1)
	require.NoError(t, r.eng.Close())
	resp := r.do("POST", "/v1/calls/1/ring", "")
	requireProblem(t, resp, "/v1/calls/1/ring", 503, httpapi.TypeUnavailable)
	assert.Equal(t, "1", resp.header.Get("Retry-After"))
	requireProblem(t, r.do("POST", "/v1/calls", seedBody(2)), "/v1/calls", 503, httpapi.TypeUnavailable)
}

// callView is GET /v1/calls/{call_id}'s answer.
type callView struct {
	CallID    int64  `json:"call_id"`
	SessionID string `json:"session_id"`
	State     string `json:"state"`
	Live      bool   `json:"live"`
	Events    []struct {
		Event       string `json:"event"`
		CallID      int64  `json:"call_id"`
		Participant string `json:"participant"`
		Timestamp   int64  `json:"timestamp"`
	} `json:"events"`
}

func (r *rig) view(id int64) callView {
	r.t.Helper()
	var v callView
	require.NoError(r.t, json.Unmarshal(r.must(http.StatusOK, "GET", fmt.Sprint("/v1/calls/", id), ""), &v))
	return v
}

func eventNames(v callView) []string {
	var out []string
	for _, ev := range v.Events {
		out = append(out, strings.TrimPrefix(ev.Event, "popin_outgoing_call_"))
	}
	return out
}

func TestGetCallHistory(t *testing.T) {
	r := newRig(t, rigConfig{api: httpapi.Config{Grace: time.Minute}})
	r.create(7)
	r.clock.Advance(2 * time.Second)
	r.must(http.StatusOK, "POST", "/v1/calls/7/ring", "")
	r.clock.Advance(3 * time.Second)
	r.must(http.StatusOK, "POST", "/v1/calls/7/accept", "")

	v := r.view(7) // read your writes: no waiting needed
	assert.Equal(t, int64(7), v.CallID)
	assert.Equal(t, sessionID, v.SessionID)
	assert.Equal(t, "accepted", v.State)
	assert.True(t, v.Live)
	assert.Equal(t, []string{"initiated", "ringing", "accepted"}, eventNames(v))
	assert.Equal(t, t0.Unix()+5, v.Events[2].Timestamp)

	// The accepted state's timeout ends the call as a network failure on
	// the user's side; the history has it, and keeps it for the grace.
	r.clock.Advance(30 * time.Second)
	v = r.view(7)
	assert.Equal(t, "network_failure", v.State)
	assert.False(t, v.Live)
	assert.Equal(t, []string{"initiated", "ringing", "accepted", "network_failure"}, eventNames(v))
	assert.Equal(t, "user", v.Events[3].Participant)
	assert.Equal(t, t0.Unix()+35, v.Events[3].Timestamp)

	r.clock.Advance(time.Minute)
	assert.Equal(t, "network_failure", r.view(7).State, "still within the grace")
	p := requireProblem(t, r.do("POST", "/v1/calls/7/ring", ""), "/v1/calls/7/ring", 409, httpapi.TypeCallEnded)
	assert.Equal(t, "network_failure", p.State)

	r.clock.Advance(time.Nanosecond) // the grace is over, for the engine as for the history
	p = requireProblem(t, r.do("GET", "/v1/calls/7", ""), "/v1/calls/7", 404, httpapi.TypeUnknownCall)
	assert.Equal(t, int64(7), p.CallID)
	requireProblem(t, r.do("POST", "/v1/calls/7/ring", ""), "/v1/calls/7/ring", 404, httpapi.TypeUnknownCall)
}

func TestGetCallErrors(t *testing.T) {
	r := newRig(t, rigConfig{})
	requireProblem(t, r.do("GET", "/v1/calls/12", ""), "/v1/calls/12", 404, httpapi.TypeUnknownCall)
	p := requireProblem(t, r.do("GET", "/v1/calls/x", ""), "/v1/calls/x", 400, httpapi.TypeInvalidRequest)
	assert.Equal(t, "call_id", p.Field)
}

func TestHistoryKeepsAtMostMaxEnded(t *testing.T) {
	r := newRig(t, rigConfig{api: httpapi.Config{MaxEnded: 2}})
	for id := int64(1); id <= 3; id++ {
		r.create(id)
		r.must(http.StatusOK, "POST", fmt.Sprint("/v1/calls/", id, "/cancel"), "")
	}
	r.create(4)
	requireProblem(t, r.do("GET", "/v1/calls/1", ""), "/v1/calls/1", 404, httpapi.TypeUnknownCall)
	assert.Equal(t, "abandoned", r.view(2).State)
	assert.Equal(t, "abandoned", r.view(3).State)
	assert.Equal(t, "initiated", r.view(4).State, "live calls are never dropped")
}

func TestHistoryDuringReplayIs503(t *testing.T) {
	// Run never starts: the history cannot catch up with the log.
	r := newRig(t, rigConfig{noRun: true})
	_, err := r.eng.Create(t.Context(), call.Details{CallID: 1})
	require.NoError(t, err)
	require.NoError(t, r.api.Close())
	resp := r.do("GET", "/v1/calls/1", "")
	requireProblem(t, resp, "/v1/calls/1", 503, httpapi.TypeUnavailable)
	assert.Equal(t, "1", resp.header.Get("Retry-After"))
}

type page struct {
	Calls []struct {
		CallID    int64  `json:"call_id"`
		State     string `json:"state"`
		SessionID string `json:"session_id"`
	} `json:"calls"`
	Next *string `json:"next"`
}

func TestListPages(t *testing.T) {
	r := newRig(t, rigConfig{})
	// Live calls 1..25 but 10 and 20, which ended, created out of order.
	for _, id := range []int64{25, 3, 17, 1, 9, 11, 2, 24, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23} {
		r.create(id)
	}
	r.must(http.StatusOK, "POST", "/v1/calls/10/cancel", "")
	r.must(http.StatusOK, "POST", "/v1/calls/20/busy", "")
	r.must(http.StatusOK, "POST", "/v1/calls/3/ring", "")

	var ids []int64
	after, pages := "", 0
	for {
		var p page
		path := "/v1/calls?limit=10"
		if after != "" {
			path += "&after=" + after
		}
		require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", path, ""), &p))
		pages++
		for _, c := range p.Calls {
			ids = append(ids, c.CallID)
			assert.Equal(t, sessionID, c.SessionID)
			if c.CallID == 3 {
				assert.Equal(t, "ringing", c.State)
			} else {
				assert.Equal(t, "initiated", c.State)
			}
		}
		if p.Next == nil {
			break
		}
		require.Len(t, p.Calls, 10, "only the last page is short")
		after = *p.Next
	}
	assert.Equal(t, 3, pages)
	var want []int64
	for id := int64(1); id <= 25; id++ {
		if id != 10 && id != 20 {
			want = append(want, id)
		}
	}
	assert.Equal(t, want, ids)

	var p page
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls", ""), &p))
	assert.Len(t, p.Calls, 23, "default limit 100")
	assert.Nil(t, p.Next)
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls?after=25", ""), &p))
	assert.Empty(t, p.Calls)
	assert.JSONEq(t, `{"calls":[]}`, string(r.must(http.StatusOK, "GET", "/v1/calls?after=25", "")))
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls?limit=23", ""), &p))
	assert.Nil(t, p.Next, "exactly the last call: no next page")
	require.NoError(t, json.Unmarshal(r.must(http.StatusOK, "GET", "/v1/calls?limit=1000", ""), &p))
	assert.Len(t, p.Calls, 23)
}

func TestListErrors(t *testing.T) {
	r := newRig(t, rigConfig{})
	for _, c := range []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"after=-1", "after"},
		{"after=x", "after"},
	} {
		t.Run(c.query, func(t *testing.T) {
			p := requireProblem(t, r.do("GET", "/v1/calls?"+c.query, ""), "/v1/calls", 400, httpapi.TypeInvalidRequest)
			assert.Equal(t, c.field, p.Field)
		})
	}
}

func TestUnmatchedRoutes(t *testing.T) {
	r := newRig(t, rigConfig{})
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v2/calls", 404, ""},
		{"GET", "/v1/calls/1/ring/again", 404, ""},
		{"DELETE", "/v1/calls", 405, "GET, HEAD, POST"},
		{"GET", "/v1/calls/1/ring", 405, "POST"},
		{"POST", "/v1/calls/1", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			resp := r.do(c.method, c.path, "")
			requireProblem(t, resp, c.path, c.status, "about:blank")
			assert.Equal(t, c.allow, resp.header.Get("Allow"))
		})
	}
}
