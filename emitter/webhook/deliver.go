package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/callfsm/callfsm/emitter/eventlog"
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

// sender delivers single events to one URL: signing, attempts, retries
// with backoff, dead letters and the metrics of them. It is the delivery
// core every dispatcher of the package shares; a dispatcher decides what to
// deliver when, and what a finished delivery means (a cursor that moves, a
// message acknowledged). It is safe for concurrent use.
type sender struct {
	url            string // where requests go, as configured
	name           string // the URL as shown (redactURL)
	key            []byte
	client         *http.Client
	own            bool // client is ours: close its idle connections when done
	maxAttempts    int
	baseBackoff    time.Duration
	maxBackoff     time.Duration
	timeout        time.Duration
	deadLetterPath string
	log            *slog.Logger
	m              *metrics

	// Injected for tests; set by newSender.
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n int64) int64 // uniform in [0, n]

	dlMu   sync.Mutex
	dl     *os.File // the dead-letter file, opened at the first dead letter
	dlTorn bool     // the last write to it failed
}

// newSender makes the sender of a validated endpoint, with its metrics
// (not yet registered).
func newSender(e *endpoint, key []byte, name string) *sender {
	s := &sender{
		url:            e.URL,
		name:           name,
		key:            key,
		client:         e.Client,
		maxAttempts:    e.MaxAttempts,
		baseBackoff:    e.BaseBackoff,
		maxBackoff:     e.MaxBackoff,
		timeout:        e.Timeout,
		deadLetterPath: e.DeadLetterPath,
		log:            e.Logger.With("url", name),
		m:              newMetrics(),
		now:            time.Now,
		sleep:          sleepCtx,
		jitter:         func(n int64) int64 { return rand.Int64N(n + 1) },
	}
	if s.client == nil {
		s.client, s.own = newClient(e.Parallel), true
	}
	return s
}

// close releases what the deliveries held: the dead-letter file and, if
// the client is the sender's own, its idle connections. Call it once no
// delivery is in progress.
func (s *sender) close() error {
	if s.own {
		s.client.CloseIdleConnections()
	}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	if s.dl == nil {
		return nil
	}
	err := s.dl.Close()
	s.dl = nil
	return err
}

// outcome is what one attempt came to.
type outcome struct {
	ok         bool
	retry      bool
	class      string // a failure reason label
	reason     string // for the log and the dead letter
	retryAfter time.Duration
	hasAfter   bool // the response had a usable Retry-After
}

// deliver tries rec until it is delivered or dead-lettered (true), or
// until its dispatcher stops or drains before it is (false). readAt is
// when the dispatcher got rec, for the latency metric.
func (s *sender) deliver(hardCtx, drainCtx context.Context, rec eventlog.Record, readAt time.Time) bool {
	id := EventID(rec.Seq)
	body := rec.Event.AppendJSON(make([]byte, 0, 512))
	for attempt := 1; ; attempt++ {
		if attempt > 1 && drainCtx.Err() != nil {
			return false // a retry is left for the next run
		}
		s.m.attempts.Inc()
		out := s.attempt(hardCtx, id, body)
		if out.ok {
			start := readAt
			if ts := time.Unix(rec.Event.Timestamp+1, 0); rec.Event.Timestamp > 0 && ts.Before(start) {
				start = ts
			}
			s.m.latency.Observe(s.now().Sub(start).Seconds())
			s.m.deliveries.WithLabelValues(resultDelivered).Inc()
			return true
		}
		if hardCtx.Err() != nil {
			return false // cancelled by a hard stop, not the receiver's failure
		}
		s.m.failures.WithLabelValues(out.class).Inc()
		if !out.retry || attempt >= s.maxAttempts {
			return s.deadLetter(drainCtx, DeadLetter{
				WebhookID: id,
				Seq:       rec.Seq,
				CallID:    rec.Event.CallID,
				Event:     rec.Event.Event,
				Attempts:  attempt,
				Reason:    out.reason,
				Payload:   body,
			})
		}
		wait := s.backoff(attempt)
		if out.hasAfter {
			wait = min(out.retryAfter, s.maxBackoff)
		}
		s.log.Debug("webhook: attempt failed; retrying",
			"webhook_id", id, "call_id", rec.Event.CallID, "attempt", attempt, "reason", out.reason, "retry_in", wait)
		if s.sleep(drainCtx, wait) != nil {
			return false
		}
	}
}

// attempt makes one request.
func (s *sender) attempt(ctx context.Context, id string, body []byte) outcome {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil { // the URL was checked by the constructor
		return outcome{class: reasonNetwork, reason: "network: " + err.Error()}
	}
	now := s.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, string(appendSignature(make([]byte, 0, 48), s.key, id, now.Unix(), body)))

	resp, err := s.client.Do(req)
	if err != nil {
		return outcome{retry: true, class: reasonNetwork, reason: "network: " + s.describe(err)}
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
func (s *sender) describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no response within %v (Config.Timeout)", s.timeout)
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

// backoff is the wait before attempt n+1: full jitter over an exponential
// ceiling, min(MaxBackoff, BaseBackoff·2^(n-1)).
func (s *sender) backoff(n int) time.Duration {
	ceiling := s.maxBackoff
	// c>>(n-1) == baseBackoff: the shift did not overflow.
	if c := s.baseBackoff << (n - 1); c > 0 && c < ceiling && c>>(n-1) == s.baseBackoff {
		ceiling = c
	}
	return time.Duration(s.jitter(int64(ceiling)))
}

// deadLetter appends dl (with its URL and time filled in) to the
// dead-letter file and syncs it, so that no event is finished that is
// neither delivered nor recorded. If the file cannot be written it retries
// every MaxBackoff until it can, or until ctx ends (false: the event is not
// finished).
func (s *sender) deadLetter(ctx context.Context, dl DeadLetter) bool {
	dl.URL, dl.At = s.name, s.now().UTC()
	line, err := json.Marshal(dl)
	if err != nil { // cannot happen: Payload is valid JSON
		panic(fmt.Sprintf("webhook: encoding a dead letter: %v", err))
	}
	line = append(line, '\n')
	for {
		err := s.appendDeadLetter(line)
		if err == nil {
			break
		}
		s.log.Error("webhook: writing a dead letter failed; retrying",
			"path", s.deadLetterPath, "webhook_id", dl.WebhookID, "err", err, "retry_in", s.maxBackoff)
		if s.sleep(ctx, s.maxBackoff) != nil {
			return false
		}
	}
	s.m.deliveries.WithLabelValues(resultDeadLettered).Inc()
	s.log.Warn("webhook: event dead-lettered",
		"webhook_id", dl.WebhookID, "seq", dl.Seq, "call_id", dl.CallID, "event", dl.Event,
		"attempts", dl.Attempts, "reason", dl.Reason, "path", s.deadLetterPath)
	return true
}

func (s *sender) appendDeadLetter(line []byte) error {
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	if s.dl == nil {
		f, err := os.OpenFile(s.deadLetterPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		s.dl = f
	}
	if s.dlTorn {
		// The last write failed, maybe half-way: end that line first, so
		// that the damage is one bad line, not two.
		line = append([]byte{'\n'}, line...)
	}
	if _, err := s.dl.Write(line); err != nil {
		// Drop the handle: the next try reopens the file.
		_ = s.dl.Close()
		s.dl, s.dlTorn = nil, true
		return err
	}
	s.dlTorn = false
	return s.dl.Sync()
}

// sleepCtx waits for dur or until ctx is done.
func sleepCtx(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
