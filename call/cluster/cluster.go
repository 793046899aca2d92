// Package cluster runs calls over NATS JetStream, so that many stateless
// nodes (`callfsm serve --nats`) share them: any node applies any input to
// any call, any node can die, and nothing a node holds matters.
//
// The call log is a JetStream stream (emitter/eventlog/jetstream), one
// subject per call. A node applies an input by reading the call's last
// event (cached, with its stream sequence), running the same transition
// rule as the single-process engine (call.Step), and appending the new
// event with optimistic concurrency on the call's subject
// (Nats-Expected-Last-Subject-Sequence) and a Nats-Msg-Id naming the
// attempt (<call_id>.<previous sequence>.<trigger>.<node>.<n>). Two nodes
// racing on one call yield exactly one transition: the loser's append is
// refused, it reads the call again and answers as a single engine would,
// applying its input to the new state if that is still legal, else an
// error. A retried append is deduplicated by JetStream, and an append whose
// answer was lost is recognised by its id in the call's last event.
//
// Timeouts live in JetStream too, as message schedules on a second stream
// (<log stream>_TIMERS), one pending per call on the call's timer subject:
// creating a call arms one for the initial state's deadline, and a new one
// (replacing the pending one) is armed only when a call enters a state
// whose deadline comes before the previous state's. A schedule fires
// Config.TimerLead before its deadline into a durable work-queue consumer
// all nodes share; the node that takes it reads the call's last event and
// decides from it alone: nothing to do (the call ended, or is in a state
// without a timeout: a stale timer is a no-op), re-arm (the call is in a
// later state with a later deadline), or time out: hold the timer until the
// deadline, then append the timeout with the same compare-and-set as any
// input, stamped with the deadline. So with the Popin lifecycle, whose
// timeouts are equal, one schedule per call covers its initiated, ringing
// and accepted states, and nothing is cancelled. When no node runs,
// schedules still fire and wait in the consumer; the first node back
// applies them, each stamped with its deadline.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/fsm"
)

// Defaults of Config.
const (
	// DefaultTimerLead is how long before its deadline a schedule fires,
	// by default: JetStream's scheduler runs at most every 250 ms and, with
	// thousands of schedules due a second, delivers them up to about a
	// second late (see docs/performance.md), so a node takes the timer
	// early and holds it until the deadline.
	DefaultTimerLead = 2 * time.Second
	// DefaultTimerAckWait is how long, by default, a fired timer taken by
	// a node that died waits before another node takes it.
	DefaultTimerAckWait = 5 * time.Second
	// DefaultCacheSize is how many calls' last events a node caches.
	DefaultCacheSize = 100_000
	// DefaultMaxAttempts bounds how many times one input is tried against
	// a call that keeps changing under it.
	DefaultMaxAttempts = 16
)

// timerConsumer is the durable consumer of fired timers all nodes share.
const timerConsumer = "callfsm-timers"

// Config configures an Engine. Log is required; the zero value of every
// other field means the default its comment gives.
type Config struct {
	// Log is the call log every node shares. Required. The Engine does not
	// close it.
	Log *jetstream.Log
	// Spec is the lifecycle. Nil means fsm.Outgoing(). Every node must use
	// the same.
	Spec *fsm.Spec
	// Now tells the time of clients' inputs (their events' timestamps).
	// Nil means time.Now. Timeouts follow the NATS servers' clocks for
	// when schedules fire and this clock for when they apply.
	Now func() time.Time
	// NewSessionID makes a session_id for a call created without one. Nil
	// means a random UUID.
	NewSessionID func() string
	// TimerStream is the stream of the timers' schedules; "" means the
	// log's stream name followed by "_TIMERS".
	TimerStream string
	// TimerSubjects is the subject prefix of the timers: schedules go to
	// "<TimerSubjects>.sched.<call_id>" and fire into
	// "<TimerSubjects>.fired.<call_id>". "" means "callfsm.timers".
	TimerSubjects string
	// TimerLead is how long before its deadline a schedule fires; the node
	// that takes it holds it until the deadline. Zero means
	// DefaultTimerLead. It must be shorter than TimerAckWait.
	TimerLead time.Duration
	// TimerAckWait is how long a fired timer stays with a node before
	// JetStream gives it to another, should the first have died. Zero
	// means DefaultTimerAckWait.
	TimerAckWait time.Duration
	// CacheSize bounds the calls whose last event the node caches. Zero
	// means DefaultCacheSize; negative means no cache.
	CacheSize int
	// MaxAttempts bounds how often one input is retried after losing a
	// race. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// Logger receives errors no caller is told about (a timer that could
	// not be applied). Nil means slog.Default().
	Logger *slog.Logger
}

// Engine applies inputs to calls kept in JetStream. It is safe for
// concurrent use; several Engines, in one process or many, may share one
// log. Make one with New, stop it with Close.
type Engine struct {
	cfg    Config
	log    *jetstream.Log
	spec   *fsm.Spec
	now    func() time.Time
	logger *slog.Logger
	cache  *cache
	timers *timers

	node        string        // this node's name in message ids
	requests    atomic.Uint64 // numbers the appends this node tries
	transitions atomic.Uint64 // appended by this node
	conflicts   atomic.Uint64 // appends refused because another came first
	timeouts    atomic.Uint64 // timeouts this node applied

	mu     sync.Mutex
	closed bool
}

// New checks cfg, creates (or updates) the timers' stream and consumer,
// and starts taking fired timers. Every error names what was wrong.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, log: cfg.Log, spec: cfg.Spec, now: cfg.Now, logger: cfg.Logger,
		cache: newCache(cfg.CacheSize), node: uuid.NewString()[:8],
	}
	if err := startTimers(ctx, e); err != nil {
		return nil, err
	}
	// Every node's appends reach this node's cache through the log's
	// tail, so that a call driven through several nodes in turn is
	// rarely read from JetStream (a cache still behind costs one lost
	// race and a read).
	cfg.Log.OnTail(func(h jetstream.Head) {
		if st, ok := e.spec.StateOf(h.Event.Event); ok && e.spec.Terminal(st) {
			e.cache.drop(h.Event.CallID)
			return
		}
		e.cache.put(h.Event.CallID, h)
	})
	return e, nil
}

func (c *Config) fill() error {
	switch {
	case c.Log == nil:
		return errors.New("cluster: Config.Log is nil")
	case c.TimerLead < 0:
		return errors.New("cluster: Config.TimerLead is negative")
	case c.TimerAckWait < 0:
		return errors.New("cluster: Config.TimerAckWait is negative")
	case c.MaxAttempts < 0:
		return errors.New("cluster: Config.MaxAttempts is negative")
	}
	if c.Spec == nil {
		c.Spec = fsm.Outgoing()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewSessionID == nil {
		c.NewSessionID = uuid.NewString
	}
	if c.TimerStream == "" {
		c.TimerStream = c.Log.Stream() + "_TIMERS"
	}
	if c.TimerSubjects == "" {
		c.TimerSubjects = "callfsm.timers"
	}
	if c.TimerLead == 0 {
		c.TimerLead = DefaultTimerLead
	}
	if c.TimerAckWait == 0 {
		c.TimerAckWait = DefaultTimerAckWait
	}
	if c.TimerLead >= c.TimerAckWait {
		return fmt.Errorf("cluster: Config.TimerLead (%v) must be shorter than Config.TimerAckWait (%v)", c.TimerLead, c.TimerAckWait)
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Spec returns the lifecycle.
func (e *Engine) Spec() *fsm.Spec { return e.spec }

// Log returns the call log.
func (e *Engine) Log() *jetstream.Log { return e.log }

// Stats are a node's counters since New.
type Stats struct {
	Transitions uint64 // events this node appended (creations included)
	Conflicts   uint64 // appends refused because another node's came first
	Timeouts    uint64 // timeouts this node applied
	TimersHeld  int    // fired timers this node holds until their deadline
}

// Stats returns the node's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Transitions: e.transitions.Load(), Conflicts: e.conflicts.Load(),
		Timeouts: e.timeouts.Load(), TimersHeld: e.timers.held(),
	}
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Close stops taking fired timers and hands those it holds back to
// JetStream (unacknowledged, negatively), so that another node applies
// them at once; later inputs fail with call.ErrClosed.
// It leaves the log, the streams and the connection as they are, and is
// idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.timers.stop()
	return nil
}

// Start creates a call in the lifecycle's initial state and appends its
// event; see Create. It returns the call's details, its session_id filled.
func (e *Engine) Start(ctx context.Context, d call.Details) (call.Details, error) {
	return e.Create(ctx, d)
}

// Create creates a call in the lifecycle's initial state: it appends the
// initial event only if the call_id has no events or its last event ended
// it (so an ended call's id may be reused at once, as with call.Engine).
// Errors: *call.InputError, *call.CallError (call.ErrCallExists) when the
// id belongs to a live call, *call.EmitError when JetStream is unreachable,
// call.ErrClosed.
func (e *Engine) Create(ctx context.Context, d call.Details) (call.Details, error) {
	if e.isClosed() {
		return d, call.ErrClosed
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	if d.SessionID == "" {
		d.SessionID = e.cfg.NewSessionID()
	}
	initial := e.spec.Initial()
	lost := false // a racing append won: the call's timer may be ours
	// Most creations are of new ids: the first try appends without a read
	// when the cache knows nothing of the id (the tail brings every
	// node's calls), or that it ended; the compare-and-set catches the
	// rest, and the next tries read the leader.
	want := fromCache
	var lostErr error // the last try's lost race: its leader's view
	for range e.cfg.MaxAttempts {
		var head jetstream.Head
		var ok bool
		if want == fromCache {
			head, ok = e.cache.get(d.CallID)
			want = fromLeader
			if ok && !e.endedEvent(&head.Event) {
				continue // live, as far as the cache knows: the leader says
			}
		} else {
			var err error
			head, ok, err = e.readAgain(ctx, d.CallID, lostErr)
			lostErr = nil
			if err != nil {
				return d, &call.EmitError{CallID: d.CallID, Event: e.spec.EventName(initial), Err: err}
			}
		}
		var after uint64
		if ok {
			st, err := e.stateOf(&head.Event)
			if err != nil || !e.spec.Terminal(st) {
				if lost && err == nil { // our timer replaced the winner's
					if td, _, timed := e.spec.Timeout(st); timed {
						entered := deadline(&head, td).Add(-td)
						if err := e.timers.arm(head.Event.CallID, st, entered).await(context.WithoutCancel(ctx)); err != nil {
							e.logger.Error("cluster: re-arming a call's timer after a lost create race failed", "call_id", head.Event.CallID, "err", err)
						}
					}
				}
				return d, &call.CallError{CallID: d.CallID, Err: call.ErrCallExists}
			}
			after = head.Seq
		}
		at := e.now()
		ev := call.NewEvent(e.spec, &d, initial, "", at.Unix())
		// The initial state's timer is armed before the event is
		// appended: a node dying between the two leaves a timer that
		// wakes the call up, never a call without one.
		timer := e.timers.arm(d.CallID, initial, at)
		if _, err := e.tryAppend(ctx, ev, after, "create"); err != nil {
			if errors.Is(err, jetstream.ErrConflict) {
				lost, lostErr = true, err
				continue
			}
			return d, &call.EmitError{CallID: d.CallID, Event: ev.Event, Err: err}
		}
		e.awaitTimer(ctx, timer, d.CallID)
		return d, nil
	}
	return d, &call.EmitError{CallID: d.CallID, Event: e.spec.EventName(initial), Err: errContended}
}

// errContended is the error of an input that lost MaxAttempts races.
var errContended = errors.New("cluster: the call kept changing under this input; try again")

// Fire applies trigger to the call; see Apply.
func (e *Engine) Fire(ctx context.Context, id int64, trigger fsm.Trigger) (fsm.State, error) {
	return e.Apply(ctx, id, call.Input{Trigger: trigger})
}

// Apply applies an input to the call with that id and returns the state
// the call is in afterwards, as call.Engine.Apply does and with the same
// errors; *call.EmitError when JetStream is unreachable. When another node
// changes the call first, Apply reads it again and applies the input to
// the new state if it is still legal there.
func (e *Engine) Apply(ctx context.Context, id int64, in call.Input) (fsm.State, error) {
	if e.isClosed() {
		return "", call.ErrClosed
	}
	want := fromCache // how fresh the next read must be
	var lost error    // the last try's lost race: its leader's view
	for range e.cfg.MaxAttempts {
		var head jetstream.Head
		var ok bool
		got := fromLeader
		var err error
		if lost != nil {
			head, ok, err = e.readAgain(ctx, id, lost)
			lost = nil
		} else {
			head, ok, got, err = e.read(ctx, id, want)
		}
		if err != nil {
			return "", &call.EmitError{CallID: id, Err: err}
		}
		// An answer other than a transition is given only from the
		// leader's view: the cache, or a lagging replica, may be behind.
		sure := got == fromLeader
		if !ok {
			if !sure {
				want = fromLeader
				continue
			}
			return "", &call.CallError{CallID: id, Err: call.ErrUnknownCall}
		}
		from, err := e.stateOf(&head.Event)
		if err != nil {
			return "", err
		}
		if e.spec.Terminal(from) {
			if !sure { // the id may have been reused since
				want = fromLeader
				continue
			}
			return from, &call.EndedError{CallID: id, State: from}
		}
		if in.Trigger == fsm.Timeout { // after unknown and ended, as call.Engine answers
			if !sure {
				want = fromLeader
				continue
			}
			return from, &call.InputError{CallID: id, Field: "trigger", Reason: "timeout is fired by the engine's timers, not by callers"}
		}
		d := call.DetailsOf(&head.Event)
		now := e.now()
		to, ev, err := call.Step(ctx, e.spec, &d, from, in, now)
		if err != nil {
			// Illegal here, or a participant this state's transition does
			// not take: the call may be elsewhere, or ended, by now.
			if !sure && ctx.Err() == nil {
				want = fromLeader
				continue
			}
			return from, err
		}
		if !sure && e.needsTimer(&head, from, to, now) {
			// The new schedule replaces the call's pending one: armed for a
			// state the call has left, it could replace the earlier one its
			// real state needs. Arm only from the leader's view.
			want = fromLeader
			continue
		}
		timer := e.wake(&head, from, &ev, to, now)
		if _, err := e.tryAppend(ctx, ev, head.Seq, string(in.Trigger)); err != nil {
			if errors.Is(err, jetstream.ErrConflict) {
				want, lost = fromLeader, err
				continue
			}
			return from, &call.EmitError{CallID: id, State: from, Event: ev.Event, Err: err}
		}
		e.awaitTimer(ctx, timer, id)
		if e.spec.Terminal(to) {
			e.cache.drop(id)
		}
		return to, nil
	}
	return "", &call.EmitError{CallID: id, Err: errContended}
}

// tryAppend appends ev after the call's event at sequence after, with the
// message id <call_id>.<after>.<what>.<node>.<n>, and caches it. The id
// names this attempt of this request on this node: a retried publish of it
// is deduplicated, and two requests never share one, so that of two equal
// triggers racing the loser learns it lost (and answers as a single engine
// would answer the second). When the append is refused, or its answer
// lost, the call's last event tells what happened: if it carries the
// message id, the append was made (its answer was lost) and counts as
// made; else another append won the race, and tryAppend returns
// ErrConflict, the winner's event cached.
func (e *Engine) tryAppend(ctx context.Context, ev event.Event, after uint64, what string) (jetstream.Head, error) {
	mid := e.attemptID(ev.CallID, after, what, e.requests.Add(1))
	seq, _, err := e.log.AppendIf(ctx, ev, after, mid)
	if err == nil {
		// Stored a moment ago, or (a duplicate) by an earlier try of this
		// very attempt, whose id no other append has: made either way. The
		// tail brings the server's own time.
		h := jetstream.Head{Record: eventlog.Record{Seq: seq, Event: ev}, MsgID: mid, Stored: e.now()}
		e.transitions.Add(1)
		e.cache.put(ev.CallID, h)
		return h, nil
	}
	head, ok, _, rerr := e.read(ctx, ev.CallID, fromLeader)
	switch {
	case rerr == nil && ok && head.MsgID == mid && head.Seq > after:
		e.transitions.Add(1)
		return head, nil
	case errors.Is(err, jetstream.ErrConflict):
		e.conflicts.Add(1)
		lost := &lostRace{id: ev.CallID}
		if rerr == nil {
			lost.head, lost.ok, lost.read = head, ok, true
		}
		return head, lost
	default:
		return head, err
	}
}

// lostRace is tryAppend's error when another append came first
// (errors.Is jetstream.ErrConflict). It carries the call's last event as
// the leader gave it just after, so that the next try starts from it
// rather than read it again.
type lostRace struct {
	id   int64
	head jetstream.Head
	ok   bool // the call has an event
	read bool // head and ok were read
}

func (l *lostRace) Error() string {
	return fmt.Sprintf("cluster: call %d: %v", l.id, jetstream.ErrConflict)
}

// Unwrap returns jetstream.ErrConflict.
func (l *lostRace) Unwrap() error { return jetstream.ErrConflict }

// readAgain returns the call's last event for the try after a lost race:
// the leader's view the race left in err, else a fresh read from the
// leader.
func (e *Engine) readAgain(ctx context.Context, id int64, err error) (jetstream.Head, bool, error) {
	var lost *lostRace
	if errors.As(err, &lost) && lost.read {
		return lost.head, lost.ok, nil
	}
	h, ok, _, err := e.read(ctx, id, fromLeader)
	return h, ok, err
}

// attemptID is the message id of a node's n-th append, of event what after
// sequence after on call id: <call_id>.<after>.<what>.<node>.<n>.
func (e *Engine) attemptID(id int64, after uint64, what string, n uint64) string {
	return strconv.FormatInt(id, 10) + "." + strconv.FormatUint(after, 10) + "." + what +
		"." + e.node + "." + strconv.FormatUint(n, 36)
}

// freshness is how recent a read of a call's last event is sure to be.
type freshness int

const (
	fromCache   freshness = iota // this node's cache: maybe behind
	fromReplica                  // a direct get, answered by any replica: maybe behind with Replicas > 1
	fromLeader                   // every acknowledged append: the stream leader's view
)

// read returns the call's last event, at least as fresh as want, and how
// fresh it is. A cache miss reads JetStream; with one replica a direct get
// is the leader's view.
func (e *Engine) read(ctx context.Context, id int64, want freshness) (h jetstream.Head, ok bool, got freshness, err error) {
	if err := e.connected(); err != nil {
		return h, false, want, err
	}
	if want == fromCache {
		if h, ok := e.cache.get(id); ok {
			return h, true, fromCache, nil
		}
	}
	if want == fromLeader && e.log.Replicas() > 1 {
		h, ok, err = e.log.LastFromLeader(ctx, id)
		got = fromLeader
	} else {
		h, ok, err = e.log.Last(ctx, id)
		got = fromReplica
		if e.log.Replicas() == 1 {
			got = fromLeader
		}
	}
	if err != nil || !ok {
		e.cache.drop(id)
		return h, ok, got, err
	}
	e.cache.put(id, h)
	return h, true, got, nil
}

// wake makes sure that a call entering state to by event next (from
// state from, entered by event prev) has a timer that fires by to's
// deadline (less TimerLead), if to has a timeout. A call has one pending
// schedule at a time, armed when it was created; it wakes the call up,
// which then re-arms it for the state the call is in then. So a new
// schedule is needed only when to's deadline comes before from's, which
// the pending schedule may be armed for (with the Popin lifecycle's equal
// timeouts, never: one schedule per call covers its timed states). It is
// armed before the event is appended, so that a node dying in between
// leaves a call with a timer early enough, never one too late; should the
// append lose a race, the early timer only wakes the call up. (Apply arms
// only from the leader's view: from a lagging cache, a schedule could
// replace the earlier one of a state the call has reached since, and the
// call would time out late.) Deadlines are whole
// seconds, as events' timestamps are, plus the sub-second part of when
// JetStream stored the event (see deadline).
func (e *Engine) wake(prev *jetstream.Head, from fsm.State, next *event.Event, to fsm.State, at time.Time) *armed {
	if !e.needsTimer(prev, from, to, at) {
		return &armed{} // a pending schedule fires early, or as a no-op
	}
	return e.timers.arm(next.CallID, to, at)
}

// needsTimer reports whether wake arms a schedule: to has a timeout, and
// its deadline comes before from's (or from has none).
func (e *Engine) needsTimer(prev *jetstream.Head, from, to fsm.State, at time.Time) bool {
	d, _, timed := e.spec.Timeout(to)
	if !timed {
		return false
	}
	pd, _, wasTimed := e.spec.Timeout(from)
	return !wasTimed || at.Add(d).Before(deadline(prev, pd))
}

// deadline returns when the timeout d of the state h entered falls due: d
// after JetStream stored the event (to the nanosecond, so that calls rung
// in the same second do not all time out at once), but never before the
// event's timestamp (whole seconds) plus d, which is the timeout event's
// own timestamp.
func deadline(h *jetstream.Head, d time.Duration) time.Time {
	stamp := time.Unix(h.Event.Timestamp, 0).Add(d)
	if due := h.Stored.Add(d); due.After(stamp) {
		return due
	}
	return stamp
}

// awaitTimer waits for the schedule of a transition that is appended. The
// transition stands whatever happens to it; a schedule that could not be
// stored (JetStream refusing it while it took the event) is logged and
// counted in callfsm_cluster_timer_arm_errors_total: the call then times
// out by its previous schedule, late, or, for a new call, not at all.
func (e *Engine) awaitTimer(ctx context.Context, a *armed, id int64) {
	// The transition is made: its timer is waited for even if the caller
	// has gone.
	if err := a.await(context.WithoutCancel(ctx)); err != nil {
		e.logger.Error("cluster: a call's timer could not be armed", "call_id", id, "err", err)
	}
}

// endedEvent reports whether ev ended its call.
func (e *Engine) endedEvent(ev *event.Event) bool {
	st, err := e.stateOf(ev)
	return err == nil && e.spec.Terminal(st)
}

// stateOf returns the state an event of the log entered, or an error for
// an event the lifecycle does not know (a log of another lifecycle).
func (e *Engine) stateOf(ev *event.Event) (fsm.State, error) {
	if st, ok := e.spec.StateOf(ev.Event); ok {
		return st, nil
	}
	return "", fmt.Errorf("cluster: call %d: its last event %q is not an event of lifecycle %q", ev.CallID, ev.Event, e.spec.Name())
}

// errDisconnected is the error of an input while the node's connection to
// NATS is down: answered at once rather than after a request timeout.
var errDisconnected = errors.New("cluster: not connected to NATS")

// connected returns errDisconnected unless the node's NATS connection is
// up.
func (e *Engine) connected() error {
	if !e.log.Conn().IsConnected() {
		return errDisconnected
	}
	return nil
}

// Ping checks that the node reaches JetStream and the log's stream, for a
// readiness probe.
func (e *Engine) Ping(ctx context.Context) error {
	if e.isClosed() {
		return call.ErrClosed
	}
	if err := e.connected(); err != nil {
		return err
	}
	if _, err := e.log.JetStream().Stream(ctx, e.log.Stream()); err != nil {
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return fmt.Errorf("stream %s not found", e.log.Stream())
		}
		return fmt.Errorf("JetStream unreachable: %w", err)
	}
	return nil
}
