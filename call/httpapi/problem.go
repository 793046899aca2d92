package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/fsm"
)

// The problem types (RFC 9457 "type" members) the API answers with. Each
// is a section of docs/serve.md. Statuses with no more to say than their
// name (401, an unknown route's 404, 405, 413, 500) are "about:blank".
const (
	problemBase = "https://github.com/callfsm/callfsm/blob/main/docs/serve.md#"
	// TypeInvalidRequest (400): malformed JSON, or a field missing or
	// ill-typed; the member "field" names it ("call_id", "agent.email",
	// "participant", "limit", "Last-Event-ID", …).
	TypeInvalidRequest = problemBase + "invalid-request"
	// TypeUnknownCall (404): no live or recently ended call has that
	// call_id.
	TypeUnknownCall = problemBase + "unknown-call"
	// TypeCallExists (409): a live call already has that call_id.
	TypeCallExists = problemBase + "call-exists"
	// TypeIllegalTransition (409): the trigger is not legal in the call's
	// state; "state" names it and "allowed" lists the legal triggers.
	TypeIllegalTransition = problemBase + "illegal-transition"
	// TypeCallEnded (409): the call has ended; "state" says how, and
	// "allowed" is empty.
	TypeCallEnded = problemBase + "call-ended"
	// TypeUnavailable (503): nothing was applied (the event log refused
	// the event, the engine is closed, the history is not caught up); try
	// again after Retry-After.
	TypeUnavailable = problemBase + "unavailable"
)

// problem is an RFC 9457 problem details object with callfsm's extension
// members.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`

	Field   string        `json:"field,omitempty"`
	CallID  int64         `json:"call_id,omitempty"`
	State   fsm.State     `json:"state,omitempty"`
	Trigger fsm.Trigger   `json:"trigger,omitempty"`
	Allowed []fsm.Trigger `json:"allowed,omitzero"` // empty, not absent, for an ended call
}

var titles = map[string]string{
	TypeInvalidRequest:    "Invalid request",
	TypeUnknownCall:       "Unknown call",
	TypeCallExists:        "Call already exists",
	TypeIllegalTransition: "Illegal transition",
	TypeCallEnded:         "Call already ended",
	TypeUnavailable:       "Service unavailable",
}

// writeProblem writes p as application/problem+json, filling in type,
// title and instance.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = titles[p.Type]
		if p.Title == "" {
			p.Title = http.StatusText(p.Status)
		}
	}
	p.Instance = r.URL.Path
	body, err := json.Marshal(p)
	if err != nil { // cannot happen: every member is a string, a number or a slice of strings
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	if p.Type == TypeUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// requestError is a request the API rejects before it reaches the engine.
type requestError struct {
	status int    // 400 unless set
	typ    string // TypeInvalidRequest unless set
	field  string
	detail string
}

func (e *requestError) Error() string {
	if e.field != "" {
		return e.field + ": " + e.detail
	}
	return e.detail
}

// invalid is a 400 naming field.
func invalid(field, format string, args ...any) *requestError {
	return &requestError{field: field, detail: fmt.Sprintf(format, args...)}
}

// fail answers err as a problem: the API's own request errors, and every
// error of call.Engine.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := a.problemOf(err)
	if p.Status == http.StatusInternalServerError {
		a.logger.Error("httpapi: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeProblem(w, r, p)
}

func (a *API) problemOf(err error) *problem {
	var (
		req     *requestError
		trans   *call.TransitionError
		ended   *call.EndedError
		callErr *call.CallError
		input   *call.InputError
	)
	switch {
	case errors.As(err, &req):
		p := &problem{Status: req.status, Type: req.typ, Field: req.field, Detail: req.Error()}
		if p.Status == 0 {
			p.Status = http.StatusBadRequest
		}
		if p.Type == "" && p.Status == http.StatusBadRequest {
			p.Type = TypeInvalidRequest
		}
		return p
	case errors.As(err, &trans):
		allowed := trans.Allowed
		if allowed == nil {
			allowed = []fsm.Trigger{}
		}
		return &problem{Status: http.StatusConflict, Type: TypeIllegalTransition, CallID: trans.CallID,
			State: trans.State, Trigger: trans.Trigger, Allowed: allowed,
			Detail: fmt.Sprintf("call %d is %s: %s is not allowed; allowed: %s", trans.CallID, trans.State, trans.Trigger, joinTriggers(allowed))}
	case errors.As(err, &ended):
		return &problem{Status: http.StatusConflict, Type: TypeCallEnded, CallID: ended.CallID,
			State: ended.State, Allowed: []fsm.Trigger{},
			Detail: fmt.Sprintf("call %d has already ended: %s", ended.CallID, ended.State)}
	case errors.As(err, &callErr) && errors.Is(err, call.ErrUnknownCall):
		return &problem{Status: http.StatusNotFound, Type: TypeUnknownCall, CallID: callErr.CallID,
			Detail: fmt.Sprintf("no live or recently ended call has call_id %d", callErr.CallID)}
	case errors.As(err, &callErr) && errors.Is(err, call.ErrCallExists):
		return &problem{Status: http.StatusConflict, Type: TypeCallExists, CallID: callErr.CallID,
			Detail: fmt.Sprintf("call %d is live; a call_id can be reused once its call has ended", callErr.CallID)}
	case errors.As(err, &input):
		return &problem{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Field: input.Field,
			CallID: input.CallID, Detail: input.Field + ": " + input.Reason}
	case errors.Is(err, call.ErrEmit):
		return &problem{Status: http.StatusServiceUnavailable, Type: TypeUnavailable,
			Detail: "the event log did not take the event, so nothing was applied: " + err.Error()}
	case errors.Is(err, call.ErrClosed):
		return &problem{Status: http.StatusServiceUnavailable, Type: TypeUnavailable, Detail: "the engine is shutting down"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &problem{Status: http.StatusServiceUnavailable, Type: TypeUnavailable, Detail: "the request was cancelled: " + err.Error()}
	default:
		return &problem{Status: http.StatusInternalServerError, Detail: "internal error"}
	}
}

func joinTriggers(ts []fsm.Trigger) string {
	if len(ts) == 0 {
		return "none"
	}
	b := make([]byte, 0, 64)
	for i, t := range ts {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, t...)
	}
	return string(b)
}

// unavailable is a 503 problem with a reason.
func unavailable(detail string) *requestError {
	return &requestError{status: http.StatusServiceUnavailable, typ: TypeUnavailable, detail: detail}
}

// parseID parses a call_id: a positive integer.
func parseID(field, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid(field, "want a positive integer, got %q", s)
	}
	return id, nil
}
