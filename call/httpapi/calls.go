package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// createRequest is the body of POST /v1/calls: the seed payload's fields
// that describe a call. call_id and user_id are required; the rest may be
// left out (strings are then empty, schedule_id and user.phone_number
// null, and session_id made by the engine).
type createRequest struct {
	CallID     *int64          `json:"call_id"`
	UserID     *int64          `json:"user_id"`
	ScheduleID *int64          `json:"schedule_id"`
	SessionID  string          `json:"session_id"`
	Agent      event.AgentInfo `json:"agent"`
	User       event.UserInfo  `json:"user"`
	Meta       event.Meta      `json:"meta"`
}

var createSchema = fields{
	"call_id": nil, "user_id": nil, "schedule_id": nil, "session_id": nil,
	"agent": {"name": nil, "email": nil},
	"user":  {"name": nil, "email": nil, "phone_number": nil, "country_code": nil},
	"meta":  {"product": {"name": nil, "id": nil, "url": nil}},
}

type createResponse struct {
	CallID    int64     `json:"call_id"`
	SessionID string    `json:"session_id"`
	State     fsm.State `json:"state"`
}

// triggerRequest is the body of POST /v1/calls/{call_id}/{trigger}; it may
// be empty but for network_failure.
type triggerRequest struct {
	Participant *string `json:"participant"`
}

var triggerSchema = fields{"participant": nil}

type stateResponse struct {
	CallID int64     `json:"call_id"`
	State  fsm.State `json:"state"`
}

func (a *API) createCall(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req createRequest
	if err := decode(body, &req, createSchema); err != nil {
		a.fail(w, r, err)
		return
	}
	switch {
	case req.CallID == nil:
		err = invalid("call_id", "missing")
	case *req.CallID <= 0:
		err = invalid("call_id", "want a positive integer, got %d", *req.CallID)
	case req.UserID == nil:
		err = invalid("user_id", "missing")
	case *req.UserID < 0:
		err = invalid("user_id", "must not be negative, got %d", *req.UserID)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d, err := a.eng.Start(r.Context(), call.Details{
		CallID: *req.CallID, SessionID: req.SessionID, UserID: *req.UserID, ScheduleID: req.ScheduleID,
		Agent: req.Agent, User: req.User, Meta: req.Meta,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/calls/"+strconv.FormatInt(d.CallID, 10))
	writeJSON(w, http.StatusCreated, createResponse{CallID: d.CallID, SessionID: d.SessionID, State: a.eng.Spec().Initial()})
}

func (a *API) fireTrigger(w http.ResponseWriter, r *http.Request) {
	id, err := parseID("call_id", r.PathValue("call_id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	trigger := fsm.Trigger(r.PathValue("trigger"))
	rule, ok := a.triggers[trigger]
	if !ok {
		detail := "no trigger " + strconv.Quote(string(trigger)) + "; the triggers are " + joinTriggers(slices.Sorted(maps.Keys(a.triggers)))
		if trigger == fsm.Timeout {
			detail = "timeout is fired by the engine's clock, not by clients"
		}
		writeProblem(w, r, &problem{Status: http.StatusNotFound, Detail: detail})
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req triggerRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decode(body, &req, triggerSchema); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	in := call.Input{Trigger: trigger}
	if req.Participant != nil {
		in.Participant = event.Participant(*req.Participant)
	}
	switch {
	case rule == participantRequired && req.Participant == nil:
		err = invalid("participant", `%s needs a participant: send {"participant":"user"} or {"participant":"agent"}`, trigger)
	case rule == participantRequired && !in.Participant.Valid():
		err = invalid("participant", `want "user" or "agent", got %q`, in.Participant)
	case rule == participantNever && req.Participant != nil:
		err = invalid("participant", "%s takes no participant", trigger)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	st, err := a.eng.Apply(r.Context(), id, in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stateResponse{CallID: id, State: st})
}

// catchUpTimeout bounds how long GET /v1/calls/{call_id} waits for the
// history to reach the log's end before answering 503.
const catchUpTimeout = 5 * time.Second

type callResponse struct {
	CallID    int64             `json:"call_id"`
	SessionID string            `json:"session_id"`
	State     fsm.State         `json:"state"`
	Live      bool              `json:"live"`
	Events    []json.RawMessage `json:"events"`
}

func (a *API) getCall(w http.ResponseWriter, r *http.Request) {
	id, err := parseID("call_id", r.PathValue("call_id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Read your writes: every event appended before this request (a 200
	// for a trigger included) is in the history before it answers.
	ctx, cancel := context.WithTimeout(r.Context(), catchUpTimeout)
	defer cancel()
	if err := a.catchUp(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	snap, ok := a.hist.lookup(id, a.now())
	if !ok {
		a.fail(w, r, &call.CallError{CallID: id, Err: call.ErrUnknownCall})
		return
	}
	resp := callResponse{CallID: id, SessionID: snap.base.SessionID, State: snap.state, Live: snap.live,
		Events: make([]json.RawMessage, len(snap.steps))}
	for i, s := range snap.steps {
		ev := snap.base
		ev.Event, ev.Participant, ev.Timestamp = s.name, s.participant, s.ts
		resp.Events[i] = ev.AppendJSON(nil)
	}
	writeJSON(w, http.StatusOK, resp)
}

// Syncer is implemented by a Log that other processes append to too
// (eventlog/jetstream's): Sync asks the log's authority for its last
// sequence, so that reads wait for other nodes' writes as well as this
// node's.
type Syncer interface {
	Sync(ctx context.Context) (uint64, error)
}

// catchUp waits until the history holds every event the log held when it
// was called: read your writes, made on this node or (with a Syncer log)
// on any.
func (a *API) catchUp(ctx context.Context) error {
	last := a.log.LastSeq()
	if s, ok := a.log.(Syncer); ok {
		seq, err := s.Sync(ctx)
		if err != nil {
			return unavailable("the event log is unreachable: " + err.Error())
		}
		last = max(last, seq)
	}
	if err := a.hist.waitFor(ctx, a.closeCtx, last); err != nil {
		return unavailable("the call history is catching up with the event log")
	}
	return nil
}

// Paging of GET /v1/calls.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

type listResponse struct {
	Calls []listedCall `json:"calls"`
	Next  string       `json:"next,omitempty"`
}

type listedCall struct {
	CallID    int64     `json:"call_id"`
	State     fsm.State `json:"state"`
	SessionID string    `json:"session_id"`
}

func (a *API) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			a.fail(w, r, invalid("limit", "want an integer from 1 to %d, got %q", maxLimit, s))
			return
		}
		limit = n
	}
	var after int64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			a.fail(w, r, invalid("after", "want a call_id, got %q", s))
			return
		}
		after = n
	}
	// Read your writes, as GET /v1/calls/{call_id}: the history holds
	// every call created before this request (on any node sharing the
	// log).
	ctx, cancel := context.WithTimeout(r.Context(), catchUpTimeout)
	defer cancel()
	if err := a.catchUp(ctx); err != nil {
		a.fail(w, r, err)
		return
	}
	calls, more := a.hist.live(after, limit)
	resp := listResponse{Calls: calls}
	if more {
		resp.Next = strconv.FormatInt(calls[len(calls)-1].CallID, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

type status struct {
	Status string `json:"status"`
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, status{"ok"})
}

// readyTimeout bounds Config.Ready.
const readyTimeout = 5 * time.Second

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.closed() {
		a.fail(w, r, unavailable("shutting down"))
		return
	}
	if !a.hist.isReady() {
		a.fail(w, r, unavailable("the call history has not replayed the event log yet"))
		return
	}
	if a.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := a.ready(ctx); err != nil {
			a.fail(w, r, unavailable("not ready: "+err.Error()))
			return
		}
	}
	writeJSON(w, http.StatusOK, status{"ready"})
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen: the API's responses are plain structs
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
