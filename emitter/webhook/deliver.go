package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// UserAgent is sent with every delivery.
const UserAgent = "callfsm-webhook/1"

// snippetBytes is how much of a failed response's body a reason quotes.
const snippetBytes = 256

// DeadLetter is one line of the dead-letter file: an event that was not
// delivered, and why.
type DeadLetter struct {
	WebhookID string          `json:"webhook_id"` // "evt_<seq>", as in the webhook-id header
	URL       string          `json:"url"`        // the receiver, without password, query or fragment
	Seq       uint64          `json:"seq"`        // the event's position in the log
	CallID    int64           `json:"call_id"`
	Event     string          `json:"event"` // the event's name, e.g. popin_outgoing_call_ringing
	Attempts  int             `json:"attempts"`
	Reason    string          `json:"reason"` // the last failure: "status 400 Bad Request: <body>" or "network: <error>"
	At        time.Time       `json:"at"`
	Payload   json.RawMessage `json:"payload"` // the body that was sent: the seed payload
}

// EventID is the webhook-id of the event at seq: "evt_" and seq in decimal.
func EventID(seq uint64) string { return "evt_" + strconv.FormatUint(seq, 10) }

// outcome is what one attempt came to.
type outcome struct {
	ok         bool
	retry      bool
	class      string // a failure reason label
	reason     string // for the log and the dead letter
	retryAfter time.Duration
	hasAfter   bool // the response had a usable Retry-After
}

// deliver tries e until it is delivered or dead-lettered (true), or until
// the Dispatcher stops or drains before it is (false).
func (d *Dispatcher) deliver(hardCtx, drainCtx context.Context, e *entry) bool {
	id := EventID(e.rec.Seq)
	body := e.rec.Event.AppendJSON(make([]byte, 0, 512))
	for attempt := 1; ; attempt++ {
		if attempt > 1 && drainCtx.Err() != nil {
			return false // a retry is left for the next run
		}
		d.m.attempts.Inc()
		out := d.attempt(hardCtx, id, body)
		if out.ok {
			start := e.readAt
			if ts := time.Unix(e.rec.Event.Timestamp+1, 0); e.rec.Event.Timestamp > 0 && ts.Before(start) {
				start = ts
			}
			d.m.latency.Observe(d.now().Sub(start).Seconds())
			d.m.deliveries.WithLabelValues(resultDelivered).Inc()
			return true
		}
		if hardCtx.Err() != nil {
			return false // cancelled by a hard stop, not the receiver's failure
		}
		d.m.failures.WithLabelValues(out.class).Inc()
		if !out.retry || attempt >= d.cfg.MaxAttempts {
			return d.deadLetter(drainCtx, e, id, attempt, out.reason, body)
		}
		wait := d.backoff(attempt)
		if out.hasAfter {
			wait = min(out.retryAfter, d.cfg.MaxBackoff)
		}
		d.log.Debug("webhook: attempt failed; retrying",
			"webhook_id", id, "call_id", e.rec.Event.CallID, "attempt", attempt, "reason", out.reason, "retry_in", wait)
		if d.sleep(drainCtx, wait) != nil {
			return false
		}
	}
}

// attempt makes one request.
func (d *Dispatcher) attempt(ctx context.Context, id string, body []byte) outcome {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, bytes.NewReader(body))
	if err != nil { // the URL was checked by New
		return outcome{class: reasonNetwork, reason: "network: " + err.Error()}
	}
	now := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, string(appendSignature(make([]byte, 0, 48), d.key, id, now.Unix(), body)))

	resp, err := d.client.Do(req)
	if err != nil {
		return outcome{retry: true, class: reasonNetwork, reason: "network: " + d.describe(err)}
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
		return outcome{ok: true}
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, snippetBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	out := outcome{reason: "status " + resp.Status}
	if s := clean(snippet); s != "" {
		out.reason += ": " + s
	}
	switch {
	case code >= 500:
		out.class, out.retry = reasonStatus5xx, true
	case code == http.StatusRequestTimeout:
		out.class, out.retry = reasonStatus408, true
	case code == http.StatusTooManyRequests:
		out.class, out.retry = reasonStatus429, true
	case code >= 400:
		out.class = reasonStatus4xx
	case code >= 300:
		out.class = reasonStatus3xx
	default:
		out.class = reasonOther
	}
	if out.retry {
		out.retryAfter, out.hasAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return out
}

// describe says why a request got no response, without the URL (which may
// hold a token in its query).
func (d *Dispatcher) describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no response within %v (Config.Timeout)", d.cfg.Timeout)
	}
	return err.Error()
}

// clean makes a response body snippet fit for a one-line reason: valid
// UTF-8, control characters as spaces, trimmed.
func clean(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110, 10.2.3). A date in the past means no wait.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		const most = uint64(1<<63-1) / uint64(time.Second)
		return time.Duration(min(n, most)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// deadLetter appends e to the dead-letter file and syncs it, so the cursor
// never passes an event that is neither delivered nor recorded. If the
// file cannot be written it retries every MaxBackoff until it can, or
// until the Dispatcher stops (false: the event stays behind the cursor).
func (d *Dispatcher) deadLetter(ctx context.Context, e *entry, id string, attempts int, reason string, body []byte) bool {
	line, err := json.Marshal(DeadLetter{
		WebhookID: id,
		URL:       d.name,
		Seq:       e.rec.Seq,
		CallID:    e.rec.Event.CallID,
		Event:     e.rec.Event.Event,
		Attempts:  attempts,
		Reason:    reason,
		At:        d.now().UTC(),
		Payload:   body,
	})
	if err != nil { // cannot happen: body is AppendJSON's valid JSON
		panic(fmt.Sprintf("webhook: encoding a dead letter: %v", err))
	}
	line = append(line, '\n')
	for {
		err := d.appendDeadLetter(line)
		if err == nil {
			break
		}
		d.log.Error("webhook: writing a dead letter failed; retrying",
			"path", d.cfg.DeadLetterPath, "webhook_id", id, "err", err, "retry_in", d.cfg.MaxBackoff)
		if d.sleep(ctx, d.cfg.MaxBackoff) != nil {
			return false
		}
	}
	d.m.deliveries.WithLabelValues(resultDeadLettered).Inc()
	d.log.Warn("webhook: event dead-lettered",
		"webhook_id", id, "seq", e.rec.Seq, "call_id", e.rec.Event.CallID, "event", e.rec.Event.Event,
		"attempts", attempts, "reason", reason, "path", d.cfg.DeadLetterPath)
	return true
}

func (d *Dispatcher) appendDeadLetter(line []byte) error {
	d.dlMu.Lock()
	defer d.dlMu.Unlock()
	if d.dl == nil {
		f, err := os.OpenFile(d.cfg.DeadLetterPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		d.dl = f
	}
	if d.dlTorn {
		// The last write failed, maybe half-way: end that line first, so
		// that the damage is one bad line, not two.
		line = append([]byte{'\n'}, line...)
	}
	if _, err := d.dl.Write(line); err != nil {
		// Drop the handle: the next try reopens the file.
		_ = d.dl.Close()
		d.dl, d.dlTorn = nil, true
		return err
	}
	d.dlTorn = false
	return d.dl.Sync()
}
