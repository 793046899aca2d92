// Package jetstream is the NATS JetStream implementation of eventlog.Log:
// one stream of call events, one subject per call
// (<prefix>.<partition>.<call_id>), the seed payload as the message body,
// replicated as the stream is. It is the log several `callfsm serve` nodes
// share.
//
// The partition token (call_id modulo Config.Partitions) lets consumers
// split the calls between them while each call stays in one partition, so
// that a consumer of a partition sees each of its calls' events in order
// (webhook delivery uses one consumer per partition). The number of
// partitions is fixed when the stream is created and kept in its metadata.
//
// Besides the Log interface, Last and AppendIf give a call's last event and
// an append that succeeds only if the call's last event is still the one
// read: the compare-and-set that lets several nodes apply triggers to one
// call and yield exactly one transition per race (call/cluster).
//
// The stream is dedicated: eventlog.Record.Seq is the stream sequence, and
// the Log contract wants sequences 1, 2, 3… without gaps, so nothing but
// this package may publish to the stream's subjects, and no message may be
// deleted or purged (Open creates the stream with DenyDelete and DenyPurge,
// and refuses a stream that already has gaps).
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

// Config configures a Log. Conn is required; the zero value of every other
// field means its default.
type Config struct {
	// Conn is the connection the Log uses. The Log never closes it.
	Conn *nats.Conn
	// Stream is the stream's name; "" means "CALLFSM".
	Stream string
	// Subjects is the subject prefix: the events of call 42 go to
	// "<Subjects>.42", and the stream holds "<Subjects>.>". "" means
	// "callfsm.calls".
	Subjects string
	// Replicas is the stream's replication factor; 0 means 1. Use 3 in a
	// cluster.
	Replicas int
	// Partitions is how many partitions the calls' subjects are spread
	// over. It is fixed when the stream is created: opening an existing
	// stream with another value is an error. 0 means the existing
	// stream's count, or DefaultPartitions for a new stream.
	Partitions int
	// MsgID, when set, gives the Nats-Msg-Id header of each append, so
	// that JetStream deduplicates a retried publish within the stream's
	// duplicate window: an append of an id already stored returns the
	// stored event's sequence and stores nothing. Nil sends no id.
	MsgID func(ev *event.Event) string
	// Timeout bounds each request to the server when the caller's context
	// has no deadline; 0 means 5 s.
	Timeout time.Duration
	// Logger reports errors of the background consumer that follows the
	// stream's tail for Wait (it recovers from them by itself). Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultStream   = "CALLFSM"
	DefaultSubjects = "callfsm.calls"
	DefaultTimeout  = 5 * time.Second
	// DefaultPartitions is how many partitions a new stream has by
	// default: enough for a few nodes to share webhook delivery.
	DefaultPartitions = 16
)

// partitionsKey is the stream metadata key holding the partition count.
const partitionsKey = "callfsm_partitions"

// MaxPartitions is the largest Config.Partitions.
const MaxPartitions = 1024

// ErrConflict is returned by AppendIf when the call's last event is no
// longer the one the caller read: another append won the race.
var ErrConflict = errors.New("eventlog/jetstream: the call's last event changed")

// numPendingHeader is the end-of-batch header of a direct batch get:
// how many messages the stream holds after the batch.
const numPendingHeader = "Nats-Num-Pending"

// readBatch is the most records one direct batch get asks for.
const readBatch = 1024

// Log is an eventlog.Log on a JetStream stream. It is safe for concurrent
// use; several Logs, in one process or many, may share one stream.
type Log struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	getSub string // the stream's direct get subject
	cc     jetstream.ConsumeContext

	last  eventlog.Watermark // last stream sequence the tail consumer saw: what Wait waits for
	acked atomic.Uint64      // last sequence of this Log's own appends (and Sync)

	mu     sync.Mutex
	closed bool

	tailMu    sync.Mutex
	recent    []eventlog.Record // ring of the last records the tail saw, contiguous
	head      int               // index of the oldest record in recent
	followers []func(Head)
}

// recentRecords is how many of the latest records a Log keeps in memory,
// so that readers following the tail (the HTTP history, SSE streams) read
// them without a request to the server.
const recentRecords = 4096

var _ eventlog.Log = (*Log)(nil)

// Open creates the stream, or updates it to cfg (file storage, direct gets
// allowed, no limits), and starts following its tail. The Log begins at
// the stream's last sequence: reopening a stream continues its numbering.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn, jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	// The partition count of an existing stream is its own: check it
	// before the update below would overwrite it.
	old, err := js.Stream(ctx, cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return nil, fmt.Errorf("eventlog/jetstream: stream %s: %w", cfg.Stream, err)
	default:
		got, ok := old.CachedInfo().Config.Metadata[partitionsKey]
		if !ok {
			return nil, fmt.Errorf("eventlog/jetstream: stream %s has no partition count (metadata %s): not a callfsm event log", cfg.Stream, partitionsKey)
		}
		if n, err := strconv.Atoi(got); err == nil && cfg.Partitions == 0 {
			cfg.Partitions = n
		}
		if got != strconv.Itoa(cfg.Partitions) {
			return nil, fmt.Errorf("eventlog/jetstream: stream %s has %q partitions, want %d: the partition count is fixed when the stream is created", cfg.Stream, got, cfg.Partitions)
		}
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	want := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "callfsm call events, one subject per call",
		Subjects:    []string{cfg.Subjects + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
		DenyDelete:  true,
		DenyPurge:   true,
		Metadata:    map[string]string{partitionsKey: strconv.Itoa(cfg.Partitions)},
	}
	stream := old
	// An existing stream already as wanted is not updated: nodes starting
	// together do not all rewrite it, and credentials that may only read
	// and publish will do.
	if old == nil || !sameStream(old.CachedInfo().Config, want) {
		stream, err = js.CreateOrUpdateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("eventlog/jetstream: stream %s: %w", cfg.Stream, err)
		}
	}
	st := stream.CachedInfo().State
	if st.NumDeleted > 0 || (st.Msgs > 0 && st.FirstSeq != 1) || st.Msgs != st.LastSeq {
		return nil, fmt.Errorf("eventlog/jetstream: stream %s has gaps (first seq %d, last %d, %d messages): not a callfsm log", cfg.Stream, st.FirstSeq, st.LastSeq, st.Msgs)
	}
	l := &Log{
		cfg:    cfg,
		js:     js,
		stream: stream,
		getSub: "$JS.API.DIRECT.GET." + cfg.Stream,
	}
	l.last.Raise(st.LastSeq)
	// The tail: an ordered consumer from the next sequence on tells Wait
	// about appends made by any node, once they are stored, keeps the
	// latest in memory for Read, and hands them to OnTail's followers.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   st.LastSeq + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: tail consumer: %w", err)
	}
	l.cc, err = cons.Consume(l.onTail, jetstream.ConsumeErrHandler(l.onTailErr))
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: tail consumer: %w", err)
	}
	return l, nil
}

// sameStream reports whether an existing stream's configuration has
// everything the Log wants of it.
func sameStream(got, want jetstream.StreamConfig) bool {
	return slices.Equal(got.Subjects, want.Subjects) && got.Storage == want.Storage &&
		got.Replicas == want.Replicas && got.Retention == want.Retention && got.Discard == want.Discard &&
		got.AllowDirect && got.DenyDelete && got.DenyPurge &&
		got.Metadata[partitionsKey] == want.Metadata[partitionsKey]
}

// fill validates cfg and sets the defaults.
func (c *Config) fill() error {
	if c.Conn == nil {
		return errors.New("eventlog/jetstream: Config.Conn is nil")
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return fmt.Errorf("eventlog/jetstream: invalid stream name %q", c.Stream)
	}
	if c.Subjects == "" {
		c.Subjects = DefaultSubjects
	}
	if strings.ContainsAny(c.Subjects, "*> \t\r\n") || strings.HasPrefix(c.Subjects, ".") ||
		strings.HasSuffix(c.Subjects, ".") || strings.Contains(c.Subjects, "..") {
		return fmt.Errorf("eventlog/jetstream: invalid subject prefix %q", c.Subjects)
	}
	switch {
	case c.Replicas < 0:
		return fmt.Errorf("eventlog/jetstream: Config.Replicas is %d", c.Replicas)
	case c.Replicas == 0:
		c.Replicas = 1
	}
	switch {
	case c.Partitions < 0 || c.Partitions > MaxPartitions:
		return fmt.Errorf("eventlog/jetstream: Config.Partitions is %d, want 1 to %d", c.Partitions, MaxPartitions)
	}
	switch {
	case c.Timeout < 0:
		return errors.New("eventlog/jetstream: Config.Timeout is negative")
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// withTimeout bounds ctx by d unless it has a deadline already.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// Subject returns the subject of call id's events:
// <prefix>.<partition>.<call_id>.
func (l *Log) Subject(callID int64) string {
	return l.PartitionSubjects(l.Partition(callID)) + "." + strconv.FormatInt(callID, 10)
}

// Partitions returns how many partitions the calls are spread over.
func (l *Log) Partitions() int { return l.cfg.Partitions }

// Partition returns the partition of call id: id modulo Partitions.
func (l *Log) Partition(callID int64) int {
	return int(uint64(callID) % uint64(l.cfg.Partitions))
}

// PartitionSubjects returns the subject prefix of partition p's calls; a
// consumer of the partition filters on it followed by ".*".
func (l *Log) PartitionSubjects(p int) string {
	return l.cfg.Subjects + "." + strconv.Itoa(p)
}

// Replicas returns the stream's replication factor.
func (l *Log) Replicas() int { return l.cfg.Replicas }

// Conn returns the Log's connection.
func (l *Log) Conn() *nats.Conn { return l.cfg.Conn }

// JetStream returns the JetStream context the Log uses.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Stream returns the stream's name.
func (l *Log) Stream() string { return l.cfg.Stream }

// Append publishes ev's seed JSON to the call's subject and returns its
// stream sequence once JetStream has stored it (on a quorum of replicas).
func (l *Log) Append(ctx context.Context, ev event.Event) (uint64, error) {
	if l.isClosed() {
		return 0, eventlog.ErrClosed
	}
	msg := &nats.Msg{Subject: l.Subject(ev.CallID), Data: ev.AppendJSON(nil)}
	if l.cfg.MsgID != nil {
		if id := l.cfg.MsgID(&ev); id != "" {
			msg.Header = nats.Header{jetstream.MsgIDHeader: []string{id}}
		}
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	ack, err := l.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(l.cfg.Stream))
	if err != nil {
		return 0, fmt.Errorf("eventlog/jetstream: append to %s: %w", msg.Subject, err)
	}
	l.raiseAcked(ack.Sequence)
	return ack.Sequence, nil
}

// Head is a call's last event: its record, the Nats-Msg-Id it was
// appended with ("" if none) and when JetStream stored it (to the
// nanosecond, by the server's clock; events' own timestamps are whole
// seconds).
type Head struct {
	eventlog.Record
	MsgID  string
	Stored time.Time
}

// Last returns call id's last event, read by a direct get of the call's
// subject; ok is false when the call has none. With Replicas > 1 a lagging
// follower may answer with an older event: AppendIf on it then fails with
// ErrConflict, never commits.
func (l *Log) Last(ctx context.Context, callID int64) (h Head, ok bool, err error) {
	if l.isClosed() {
		return h, false, eventlog.ErrClosed
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	msg, err := l.stream.GetLastMsgForSubject(ctx, l.Subject(callID))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return h, false, nil
	case err != nil:
		return h, false, fmt.Errorf("eventlog/jetstream: last event of call %d: %w", callID, err)
	}
	ev, err := event.Decode(msg.Data)
	if err != nil {
		return h, false, fmt.Errorf("eventlog/jetstream: record %d: %w", msg.Sequence, err)
	}
	return Head{Record: eventlog.Record{Seq: msg.Sequence, Event: ev}, MsgID: msg.Header.Get(jetstream.MsgIDHeader), Stored: msg.Time}, true, nil
}

// LastFromLeader is Last answered by the stream's leader
// ($JS.API.STREAM.MSG.GET rather than a direct get): it holds every
// acknowledged append, so its answer is never older than an append
// acknowledged before the call. With Replicas 1 it answers as Last does,
// by a slower path.
func (l *Log) LastFromLeader(ctx context.Context, callID int64) (h Head, ok bool, err error) {
	if l.isClosed() {
		return h, false, eventlog.ErrClosed
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{l.Subject(callID)})
	msg, err := l.cfg.Conn.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+l.cfg.Stream, req)
	if err != nil {
		return h, false, fmt.Errorf("eventlog/jetstream: last event of call %d: %w", callID, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq    uint64    `json:"seq"`
			Header []byte    `json:"hdrs"`
			Data   []byte    `json:"data"`
			Time   time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return h, false, fmt.Errorf("eventlog/jetstream: last event of call %d: bad answer: %w", callID, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return h, false, nil
	case resp.Error != nil:
		return h, false, fmt.Errorf("eventlog/jetstream: last event of call %d: %s (%d)", callID, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return h, false, fmt.Errorf("eventlog/jetstream: last event of call %d: empty answer", callID)
	}
	ev, err := event.Decode(resp.Message.Data)
	if err != nil {
		return h, false, fmt.Errorf("eventlog/jetstream: record %d: %w", resp.Message.Seq, err)
	}
	h = Head{Record: eventlog.Record{Seq: resp.Message.Seq, Event: ev}, Stored: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		hdr, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return h, false, fmt.Errorf("eventlog/jetstream: record %d: bad headers: %w", resp.Message.Seq, err)
		}
		h.MsgID = hdr.Get(jetstream.MsgIDHeader)
	}
	return h, true, nil
}

// AppendIf appends ev only if the last event of ev's call is still the one
// at stream sequence last (0: the call has no event yet), with msgID as its
// Nats-Msg-Id. It returns the new event's sequence, or ErrConflict (wrapped)
// when another append came first.
//
// A retry of an append that was stored stores nothing, and is answered in
// one of two ways (as of nats-server 2.15). A single server (Replicas 1)
// checks the last sequence before the message id: the retry fails with
// ErrConflict, and Last then shows the stored append's msgID, which is how
// a caller that did not get its answer (a timeout) learns that its append
// was made. A replicated stream's leader checks the message id first:
// within the stream's duplicate window it answers dup, whatever the call's
// last event is by then, and the returned sequence is the stored append's.
func (l *Log) AppendIf(ctx context.Context, ev event.Event, last uint64, msgID string) (seq uint64, dup bool, err error) {
	if l.isClosed() {
		return 0, false, eventlog.ErrClosed
	}
	msg := &nats.Msg{Subject: l.Subject(ev.CallID), Data: ev.AppendJSON(nil)}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(l.cfg.Stream), jetstream.WithExpectLastSequencePerSubject(last)}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	ack, err := l.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, false, fmt.Errorf("append to %s after %d: %w", msg.Subject, last, ErrConflict)
		}
		return 0, false, fmt.Errorf("eventlog/jetstream: append to %s: %w", msg.Subject, err)
	}
	l.raiseAcked(ack.Sequence)
	return ack.Sequence, ack.Duplicate, nil
}

// Read returns up to max records with Seq >= from, in stream order: from
// the last 4096 records the tail has seen if it holds from, else by direct
// batch gets ($JS.API.DIRECT.GET, up to 1024 records a request). A read
// served from memory ends where the tail is: this Log's own appends the
// tail has not seen yet (a fraction of a millisecond) come with the next
// read after Wait.
// Direct gets may be answered by any replica: on a follower that lags, Read
// may return fewer records than Wait or LastSeq promised (never wrong ones).
func (l *Log) Read(ctx context.Context, from uint64, max int) ([]eventlog.Record, error) {
	if l.isClosed() {
		return nil, eventlog.ErrClosed
	}
	if from == 0 {
		from = 1
	}
	if max <= 0 {
		return nil, nil
	}
	if from > l.LastSeq() {
		return nil, nil // nothing this Log knows of: a follower's usual read, answered without a request
	}
	// The latest records are in memory; older ones, and this node's own
	// appends the tail has not seen yet, are read from the server.
	out := l.readRecent(from, max, nil)
	if n := len(out); n > 0 {
		if n == max || out[n-1].Seq >= l.last.Load() {
			return out, nil
		}
		from = out[n-1].Seq + 1
	}
	for len(out) < max {
		n := min(max-len(out), readBatch)
		if out == nil {
			out = make([]eventlog.Record, 0, n)
		}
		got, pending, err := l.getBatch(ctx, from, n, &out)
		if err != nil {
			return out, err
		}
		if got == 0 || pending == 0 {
			break
		}
		from = out[len(out)-1].Seq + 1
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// directGet is the body of a direct get request.
type directGet struct {
	Seq   uint64 `json:"seq"`
	Batch int    `json:"batch"`
}

// getBatch asks for up to n records from seq on and appends them to out.
// It returns how many it got and how many the stream holds after them.
func (l *Log) getBatch(ctx context.Context, seq uint64, n int, out *[]eventlog.Record) (got int, pending uint64, err error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	nc := l.cfg.Conn
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, fmt.Errorf("eventlog/jetstream: read: %w", err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(directGet{Seq: seq, Batch: n})
	if err := nc.PublishRequest(l.getSub, inbox, req); err != nil {
		return 0, 0, fmt.Errorf("eventlog/jetstream: read: %w", err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return got, 0, fmt.Errorf("eventlog/jetstream: read from %d: %w", seq, err)
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204": // end of batch
				p, _ := strconv.ParseUint(m.Header.Get(numPendingHeader), 10, 64)
				return got, p, nil
			case "404": // nothing at or after seq
				return got, 0, nil
			case "503":
				return got, 0, fmt.Errorf("eventlog/jetstream: read from %d: %w", seq, nats.ErrNoResponders)
			}
			return got, 0, fmt.Errorf("eventlog/jetstream: read from %d: status %s %s", seq, status, m.Header.Get("Description"))
		}
		rseq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return got, 0, fmt.Errorf("eventlog/jetstream: read from %d: bad %s header: %w", seq, jetstream.SequenceHeader, err)
		}
		ev, err := event.Decode(m.Data)
		if err != nil {
			return got, 0, fmt.Errorf("eventlog/jetstream: record %d: %w", rseq, err)
		}
		*out = append(*out, eventlog.Record{Seq: rseq, Event: ev})
		got++
	}
}

// OnTail registers f to be called with every record the Log's tail sees,
// appended by any node, in stream order, from the tail's goroutine, from
// now on. f must be quick and must not call the Log.
func (l *Log) OnTail(f func(Head)) {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	l.followers = append(l.followers, f)
}

// onTail notes a stored message seen by the tail consumer: it keeps the
// record for Read, tells its followers, then Wait.
func (l *Log) onTail(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		l.cfg.Logger.Warn("eventlog/jetstream: tail consumer: no metadata", "stream", l.cfg.Stream, "err", err)
		return
	}
	seq := md.Sequence.Stream
	ev, err := event.Decode(msg.Data())
	if err != nil {
		l.cfg.Logger.Warn("eventlog/jetstream: tail consumer: undecodable record", "stream", l.cfg.Stream, "seq", seq, "err", err)
		l.last.Raise(seq)
		return
	}
	h := Head{Record: eventlog.Record{Seq: seq, Event: ev}, MsgID: msg.Headers().Get(jetstream.MsgIDHeader), Stored: md.Timestamp}
	l.tailMu.Lock()
	if n := len(l.recent); n > 0 && l.recent[(l.head+n-1)%n].Seq+1 != seq {
		l.recent, l.head = l.recent[:0], 0 // not contiguous (the consumer restarted): start again
	}
	if len(l.recent) < recentRecords {
		l.recent = append(l.recent, h.Record)
	} else {
		l.recent[l.head] = h.Record
		l.head = (l.head + 1) % len(l.recent)
	}
	followers := l.followers
	l.tailMu.Unlock()
	for _, f := range followers {
		f(h)
	}
	l.last.Raise(seq)
}

// readRecent appends to out the records from seq on that the tail holds,
// up to max, and returns out.
func (l *Log) readRecent(seq uint64, max int, out []eventlog.Record) []eventlog.Record {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	n := len(l.recent)
	if n == 0 {
		return out
	}
	first := l.recent[l.head].Seq
	if seq < first || seq > first+uint64(n)-1 {
		return out
	}
	for i := int(seq - first); i < n && max > 0; i, max = i+1, max-1 {
		out = append(out, l.recent[(l.head+i)%n])
	}
	return out
}

// onTailErr logs the tail consumer's errors, unless the Log is closing.
func (l *Log) onTailErr(_ jetstream.ConsumeContext, err error) {
	if l.isClosed() {
		return
	}
	l.cfg.Logger.Warn("eventlog/jetstream: tail consumer", "stream", l.cfg.Stream, "err", err)
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Sync asks the server for the stream's last sequence, which Wait then
// knows of: a reader that must see every append made before it asked (by
// any node) waits for that sequence.
func (l *Log) Sync(ctx context.Context) (uint64, error) {
	if l.isClosed() {
		return 0, eventlog.ErrClosed
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventlog/jetstream: stream %s: %w", l.cfg.Stream, err)
	}
	l.raiseAcked(info.State.LastSeq)
	return info.State.LastSeq, nil
}

// raiseAcked notes that the stream holds seq.
func (l *Log) raiseAcked(seq uint64) {
	for {
		old := l.acked.Load()
		if seq <= old || l.acked.CompareAndSwap(old, seq) {
			return
		}
	}
}

// LastSeq returns the last stream sequence this Log knows of: its own
// appends at once, other nodes' as soon as the tail consumer sees them.
func (l *Log) LastSeq() uint64 { return max(l.acked.Load(), l.last.Load()) }

// Wait blocks until the stream holds a record with Seq > after (appended
// by this Log or by any other on the stream), ctx is done, or the Log is
// closed. It returns once the tail consumer has seen the record (usually
// well under a millisecond after its append), so that a reader woken by
// it reads the record from memory.
func (l *Log) Wait(ctx context.Context, after uint64) error { return l.last.Wait(ctx, after) }

// Close stops the tail consumer, waits for it, and makes later calls
// return ErrClosed. It leaves the stream and the connection as they are,
// and is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.last.Close()
	l.cc.Stop()
	<-l.cc.Closed()
	return nil
}
