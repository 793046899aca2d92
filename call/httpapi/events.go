package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/callfsm/callfsm/emitter/eventlog"
)

// sseWriteTimeout is the write deadline each write of an SSE stream gets:
// a client that stops reading is dropped after it, instead of holding its
// handler forever.
const sseWriteTimeout = 30 * time.Second

// streamEvents serves GET /v1/events: every event appended to the log, as
// Server-Sent Events
//
//	id: <seq>
//	event: <event name>
//	data: <seed JSON>
//
// from the record after Last-Event-ID (the header, or the query parameter
// last_event_id; 0 means from the start of the log), or from the next event
// appended when neither is given. An idle stream gets a comment line every
// heartbeat. The stream ends when the client goes, the log fails or Close
// is called; a client resumes with the last id it saw.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request) {
	next, err := a.resumeFrom(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.closed() {
		a.fail(w, r, unavailable("shutting down"))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(a.closeCtx, cancel)
	defer stop()

	// The server's WriteTimeout would cut the stream: each write gets its
	// own deadline instead. (Its ReadTimeout does not matter: net/http
	// lifts the read deadline once a request without a body is read.)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	a.metrics.streams.Inc()
	defer a.metrics.streams.Dec()
	w.WriteHeader(http.StatusOK)
	if flush(w, rc, nil) != nil {
		return
	}

	buf := make([]byte, 0, 4096)
	for caughtUp := false; ; {
		var recs []eventlog.Record
		if !caughtUp { // after a short batch, wait rather than read again at once
			var err error
			recs, err = a.log.Read(ctx, next, readBatch)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, eventlog.ErrClosed) {
					a.logger.Error("httpapi: event stream: reading the event log", "err", err)
				}
				return
			}
		}
		caughtUp = false
		if len(recs) == 0 {
			wait, cancelWait := context.WithTimeout(ctx, a.heartbeat)
			err := a.log.Wait(wait, next-1)
			cancelWait()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, context.DeadlineExceeded):
				if flush(w, rc, []byte(": heartbeat\n\n")) != nil {
					return
				}
			case err != nil:
				return
			}
			continue
		}
		buf = buf[:0]
		for i := range recs {
			buf = appendSSE(buf, &recs[i])
		}
		if flush(w, rc, buf) != nil {
			return
		}
		next = recs[len(recs)-1].Seq + 1
		caughtUp = len(recs) < readBatch
	}
}

// resumeFrom returns the first sequence number a stream sends.
func (a *API) resumeFrom(r *http.Request) (uint64, error) {
	field, s := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if s == "" {
		field, s = "last_event_id", r.URL.Query().Get("last_event_id")
	}
	if s == "" {
		return a.log.LastSeq() + 1, nil
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || seq == ^uint64(0) {
		return 0, invalid(field, "want an event id (a non-negative integer), got %q", s)
	}
	return seq + 1, nil
}

// appendSSE appends one record as an SSE event.
func appendSSE(dst []byte, rec *eventlog.Record) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, rec.Seq, 10)
	dst = append(dst, "\nevent: "...)
	// A line break would end the field; event names have none, but the
	// log is input.
	name := rec.Event.Event
	if strings.ContainsAny(name, "\r\n") {
		name = strings.NewReplacer("\r", " ", "\n", " ").Replace(name)
	}
	dst = append(dst, name...)
	dst = append(dst, "\ndata: "...)
	dst = rec.Event.AppendJSON(dst) // JSON escapes line breaks: one line
	return append(dst, "\n\n"...)
}

// flush writes p and sends it now, within a fresh write deadline.
func flush(w http.ResponseWriter, rc *http.ResponseController, p []byte) error {
	if err := rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if len(p) > 0 {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return rc.Flush()
}
