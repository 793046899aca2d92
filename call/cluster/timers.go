package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/fsm"
)

// Headers of JetStream message schedules (nats-server 2.12 and later).
const (
	scheduleHeader       = "Nats-Schedule"
	scheduleTargetHeader = "Nats-Schedule-Target"
)

// timerPull is how many fired timers a node asks for at a time.
const timerPull = 1024

// armMaxPending bounds the schedules a node publishes without their
// answer yet (each request waits for its own).
const armMaxPending = 16384

// timerWorkers is how many fired timers a node works on at once (reading
// the call, appending its timeout or re-arming): 100,000 timers due
// together wait their turn in a queue rather than flood the connection.
const timerWorkers = 64

// retryDelay is how long a timer whose timeout could not be appended
// (JetStream unreachable) waits before it is tried again.
const retryDelay = time.Second

// timerBody is a schedule's body: the call and the deadline it was armed
// for. Fired timers carry it; it is a hint, as the call's last event
// decides what a fired timer does.
type timerBody struct {
	CallID   int64     `json:"call_id"`
	State    fsm.State `json:"state"`
	Deadline int64     `json:"deadline_ns"` // Unix nanoseconds
}

// timers arms, cancels and applies the calls' timeouts through JetStream
// message schedules. It owns the consumer of fired timers and the timers it
// holds until their deadline.
type timers struct {
	e         *Engine
	js        natsjs.JetStream
	nc        *nats.Conn
	schedSubj string // <prefix>.sched
	firedSubj string // <prefix>.fired
	cc        natsjs.ConsumeContext
	ctx       context.Context // done on stop
	cancelCtx context.CancelFunc
	armErrors atomic.Uint64

	mu      sync.Mutex
	due     *sync.Cond                 // on mu: queue is not empty, or stopped
	holding map[*time.Timer]natsjs.Msg // fired timers held until their deadline
	queue   []fired                    // fired timers due, waiting for a worker
	stopped bool
	dropped []natsjs.Msg // fired timers let go by stop, handed back to JetStream
	workers sync.WaitGroup
}

// fired is a fired timer of a call.
type fired struct {
	msg natsjs.Msg
	id  int64
}

// startTimers creates the timers' stream and the shared consumer of fired
// timers, sets e.timers, and starts consuming.
func startTimers(ctx context.Context, e *Engine) error {
	cfg := e.cfg
	nc := cfg.Log.Conn()
	t := &timers{
		e: e, nc: nc,
		schedSubj: cfg.TimerSubjects + ".sched",
		firedSubj: cfg.TimerSubjects + ".fired",
		holding:   make(map[*time.Timer]natsjs.Msg),
	}
	t.due = sync.NewCond(&t.mu)
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(armMaxPending),
		// A server that dies holding a schedule never answers: give up on
		// it, so that await returns (and retries) rather than wait forever.
		natsjs.WithPublishAsyncTimeout(armTimeout))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	t.js = js
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	stream, err := js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{
		Name:              cfg.TimerStream,
		Description:       "callfsm timers: one message schedule per call with a timeout armed, and the fired timers",
		Subjects:          []string{cfg.TimerSubjects + ".>"},
		Storage:           natsjs.FileStorage,
		Replicas:          cfg.Log.Replicas(),
		Retention:         natsjs.WorkQueuePolicy,
		AllowMsgSchedules: true,
		AllowRollup:       true,
	})
	if err != nil {
		return fmt.Errorf("cluster: timer stream %s: %w", cfg.TimerStream, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, natsjs.ConsumerConfig{
		Durable:       timerConsumer,
		Description:   "fired callfsm timers, shared by every node",
		FilterSubject: t.firedSubj + ".>",
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       cfg.TimerAckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
	})
	if err != nil {
		return fmt.Errorf("cluster: timer consumer on %s: %w", cfg.TimerStream, err)
	}
	t.ctx, t.cancelCtx = context.WithCancel(context.Background())
	// A fired timer taken at once (fired while no node ran) may need to
	// arm the next one: e.timers is set before the first can come.
	e.timers = t
	for range timerWorkers {
		t.workers.Go(t.work)
	}
	t.cc, err = cons.Consume(t.onFired, natsjs.PullMaxMessages(timerPull),
		natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			t.mu.Lock()
			stopped := t.stopped
			t.mu.Unlock()
			if !stopped {
				e.logger.Warn("cluster: timer consumer", "stream", cfg.TimerStream, "err", err)
			}
		}))
	if err != nil {
		t.mu.Lock()
		t.stopped = true
		t.due.Broadcast()
		t.mu.Unlock()
		t.cancelCtx()
		t.workers.Wait()
		return fmt.Errorf("cluster: timer consumer on %s: %w", cfg.TimerStream, err)
	}
	return nil
}

// withTimeout bounds ctx by the default request timeout unless it has a
// deadline already.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 5*time.Second)
}

// armed is a schedule being published: wait for it with await.
type armed struct {
	t   *timers
	msg *nats.Msg
	ack natsjs.PubAckFuture // nil: nothing to publish (err says why)
	err error
}

// arm starts publishing the schedule of call id's timeout in state st,
// entered at entered: it fires TimerLead before the deadline and replaces
// the call's pending schedule. It does not wait, so that the schedule and
// the event that needs it travel together; await tells how it went. A
// state without a timeout arms nothing.
func (t *timers) arm(id int64, st fsm.State, entered time.Time) *armed {
	d, _, ok := t.e.spec.Timeout(st)
	if !ok {
		return &armed{}
	}
	deadline := entered.Add(d)
	body, _ := json.Marshal(timerBody{CallID: id, State: st, Deadline: deadline.UnixNano()})
	sid := strconv.FormatInt(id, 10)
	a := &armed{t: t, msg: &nats.Msg{
		Subject: t.schedSubj + "." + sid,
		Data:    body,
		Header: nats.Header{
			scheduleHeader:       []string{"@at " + deadline.Add(-t.e.cfg.TimerLead).UTC().Format(time.RFC3339Nano)},
			scheduleTargetHeader: []string{t.firedSubj + "." + sid},
		},
	}}
	a.ack, a.err = t.js.PublishMsgAsync(a.msg, natsjs.WithExpectStream(t.e.cfg.TimerStream))
	return a
}

// armAttempts is how many times await publishes a schedule that failed.
const armAttempts = 3

// armTimeout bounds the wait for one publish of a schedule.
const armTimeout = 5 * time.Second

// await waits until the schedule is stored, publishing it again
// (synchronously) should it have failed. An error is counted: the call's
// timer is then only its pending schedule, if any.
func (a *armed) await(ctx context.Context) error {
	if a.msg == nil {
		return nil
	}
	if a.err == nil {
		timeout := time.NewTimer(armTimeout)
		defer timeout.Stop()
		select {
		case <-a.ack.Ok():
			return nil
		case a.err = <-a.ack.Err():
		case <-timeout.C:
			a.err = natsjs.ErrAsyncPublishTimeout
		case <-ctx.Done():
			a.err = ctx.Err()
		}
	}
	for i := 1; i < armAttempts && ctx.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(ctx, armTimeout)
		_, a.err = a.t.js.PublishMsg(pctx, a.msg, natsjs.WithExpectStream(a.t.e.cfg.TimerStream))
		cancel()
		if a.err == nil {
			return nil
		}
	}
	a.t.armErrors.Add(1)
	return fmt.Errorf("cluster: arming timer %s: %w", a.msg.Subject, a.err)
}

// onFired takes a fired timer: it holds it until its deadline (the
// schedule fired TimerLead early), then expires the call.
func (t *timers) onFired(msg natsjs.Msg) {
	var b timerBody
	if err := json.Unmarshal(msg.Data(), &b); err != nil || b.CallID <= 0 {
		t.e.logger.Error("cluster: dropping a malformed fired timer", "subject", msg.Subject(), "body", string(msg.Data()), "err", err)
		_ = msg.Term()
		return
	}
	t.hold(msg, b.CallID, time.Unix(0, b.Deadline))
}

// hold queues msg's call for a worker at due (at once if due has
// passed), unless the timers stop first.
func (t *timers) hold(msg natsjs.Msg, id int64, due time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		t.dropped = append(t.dropped, msg) // stop hands it to another node
		return
	}
	var tm *time.Timer
	tm = time.AfterFunc(max(due.Sub(t.e.now()), 0), func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.holding, tm)
		if !t.stopped {
			t.queue = append(t.queue, fired{msg, id})
			t.due.Signal()
		}
	})
	t.holding[tm] = msg
}

// work expires the queued calls until the timers stop.
func (t *timers) work() {
	for {
		t.mu.Lock()
		for len(t.queue) == 0 && !t.stopped {
			t.due.Wait()
		}
		if t.stopped {
			t.mu.Unlock()
			return
		}
		f := t.queue[0]
		t.queue[0] = fired{}
		t.queue = t.queue[1:]
		t.mu.Unlock()
		t.expire(f.msg, f.id)
	}
}

// expire applies what a fired timer asks of call id, then acknowledges it.
func (t *timers) expire(msg natsjs.Msg, id int64) {
	wait, err := t.e.expire(t.ctx, id)
	switch {
	case t.ctx.Err() != nil: // stopping: stop hands it to another node
		t.mu.Lock()
		t.dropped = append(t.dropped, msg)
		t.mu.Unlock()
	case err != nil:
		t.e.logger.Error("cluster: applying a timeout failed; retrying", "call_id", id, "err", err)
		_ = msg.NakWithDelay(retryDelay)
	case wait > 0 && wait <= t.e.cfg.TimerAckWait/2:
		t.hold(msg, id, t.e.now().Add(wait))
	default:
		// Done, or far from the deadline (a timer for a state the call
		// has left, re-armed for the current one): let it go.
		_ = msg.Ack()
	}
}

// held returns how many fired timers the node holds or has queued.
func (t *timers) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.holding) + len(t.queue)
}

// stop stops consuming, lets the held and queued timers go, waits for
// the workers, and then hands every timer it let go back to JetStream
// (a negative acknowledgement), so that another node takes it at once
// rather than after AckWait.
func (t *timers) stop() {
	t.mu.Lock()
	t.stopped = true
	for tm, msg := range t.holding {
		tm.Stop()
		t.dropped = append(t.dropped, msg)
	}
	clear(t.holding)
	for _, f := range t.queue {
		t.dropped = append(t.dropped, f.msg)
	}
	t.queue = nil
	t.due.Broadcast()
	t.mu.Unlock()
	// No more deliveries, then no more work, before the timers go back:
	// a timer handed back while this node still pulled could come back
	// to it.
	t.cc.Stop()
	<-t.cc.Closed()
	t.cancelCtx()
	t.workers.Wait()
	t.mu.Lock()
	dropped := t.dropped
	t.dropped = nil
	t.mu.Unlock()
	for _, msg := range dropped {
		_ = msg.Nak() // should it fail, JetStream redelivers after AckWait
	}
}

// expire decides what call id's timer does, from the call's last event
// alone: nothing (the call ended, or is in a state without a timeout),
// time out (the deadline has passed: the timeout is appended with the same
// compare-and-set as any input, stamped with the deadline), or wait (it
// returns how long; a deadline more than TimerAckWait/2 away is re-armed as
// a schedule). A timer for a state the call has left thus never applies.
func (e *Engine) expire(ctx context.Context, id int64) (time.Duration, error) {
	// The cache, which the log's tail keeps current, is enough to time a
	// call out (the append's compare-and-set catches a stale one); any
	// other decision is taken from the leader's view.
	want := fromCache
	var lost error // the last try's lost race: its leader's view
	for range e.cfg.MaxAttempts {
		var last jetstream.Head
		var ok bool
		got := fromLeader
		var err error
		if lost != nil {
			last, ok, err = e.readAgain(ctx, id, lost)
			lost = nil
		} else {
			last, ok, got, err = e.read(ctx, id, want)
		}
		if err != nil {
			return 0, err
		}
		sure := got == fromLeader
		if !sure {
			want = fromLeader
		}
		if !ok {
			if !sure {
				continue
			}
			return 0, nil
		}
		from, err := e.stateOf(&last.Event)
		if err != nil {
			return 0, nil
		}
		d, _, timed := e.spec.Timeout(from)
		if !timed || e.spec.Terminal(from) {
			if !sure {
				continue
			}
			return 0, nil
		}
		stamp := time.Unix(last.Event.Timestamp, 0).Add(d) // the timeout event's timestamp
		if wait := deadline(&last, d).Sub(e.now()); wait > 0 {
			if !sure {
				continue
			}
			if wait > e.cfg.TimerAckWait/2 {
				// The timer is let go only once its successor is stored.
				if err := e.timers.arm(id, from, deadline(&last, d).Add(-d)).await(ctx); err != nil {
					return 0, err
				}
			}
			return wait, nil
		}
		dt := call.DetailsOf(&last.Event)
		to, ev, err := call.Step(ctx, e.spec, &dt, from, call.Input{Trigger: fsm.Timeout}, stamp)
		if err != nil {
			return 0, err
		}
		if _, err := e.tryAppend(ctx, ev, last.Seq, string(fsm.Timeout)); err != nil {
			if errors.Is(err, jetstream.ErrConflict) {
				want, lost = fromLeader, err
				continue // decide again from the new last event
			}
			return 0, err
		}
		e.timeouts.Add(1)
		if e.spec.Terminal(to) {
			e.cache.drop(id)
		} else if _, _, timed := e.spec.Timeout(to); timed {
			// The schedule that woke the call is used up: arm the next, and
			// keep this timer until it is stored (tried again, it finds the
			// call in to and arms or holds to's timer).
			if err := e.timers.arm(id, to, stamp).await(ctx); err != nil {
				return 0, fmt.Errorf("cluster: call %d timed out into %s, whose timer could not be armed: %w", id, to, err)
			}
		}
		return 0, nil
	}
	return 0, errContended
}
