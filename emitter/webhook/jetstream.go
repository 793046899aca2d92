package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
)

// JetStreamConfig configures a JetStreamDispatcher: one receiver URL, fed
// by durable consumers of a JetStream event log. Every node delivering to
// the URL must use the same Name, Window, AckWait and PinnedTTL (they are
// the consumers' configuration, which each node creates or updates at
// Run). Zero values of the optional fields mean the defaults given beside
// them.
type JetStreamConfig struct {
	// Log is the JetStream event log whose stream is delivered: its
	// connection, stream and partitions. Required. The dispatcher never
	// closes it or its connection: close them after Shutdown.
	Log *jetstream.Log
	// URL is the receiver, http or https. Required. It is never followed
	// through redirects.
	URL string
	// Secret signs every delivery: "whsec_" + base64 of at least 24 bytes
	// (NewSecret makes one). Required.
	Secret string
	// Name names the endpoint in the stream: its consumers are
	// "<Name>-p<partition>" (see ConsumerName). A new Name starts from the
	// beginning of the stream. Letters, digits, '-' and '_', at most 64.
	// "" means "webhook-" and the first 12 hex digits of the SHA-256 of
	// URL, so that changing the URL makes new consumers.
	Name string
	// DeadLetterPath is the JSON Lines file where this node appends the
	// events it could not deliver (see DeadLetter). Each node writes its
	// own: a file on local disk. Created with mode 0600. Required.
	DeadLetterPath string

	// Parallel is how many calls this node delivers at once, over all
	// partitions. 0 means 8.
	Parallel int
	// Window is, per partition, how many messages may be delivered to a
	// node and not yet acknowledged: the consumer's MaxAckPending. A call
	// stuck in retries holds its messages, and the ones behind it in the
	// partition wait once Window of them are pending. A node holds at most
	// Window messages of each partition it delivers. 0 means 256.
	Window int
	// MaxAttempts is how many times one event is tried before it is
	// dead-lettered. 0 means 8.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the wait before a retry, as in
	// Config. 0 means 500ms and 1m.
	BaseBackoff, MaxBackoff time.Duration
	// Timeout bounds one request. 0 means 10s.
	Timeout time.Duration
	// AckWait is how long JetStream waits for a delivered message to be
	// acknowledged before it delivers it again. The node holding a message
	// keeps it from expiring (it sends "in progress" every AckWait/3) for
	// as long as it is queued, in flight or waiting to retry, and it can
	// vouch for the partition's pin, so AckWait matters once that node is
	// gone: it delays a takeover no more than PinnedTTL does. At least
	// 100ms; 0 means 10s.
	AckWait time.Duration
	// PinnedTTL is how long a partition stays pinned to a node that has
	// stopped pulling it before another node can take it over. It must
	// exceed AckWait by at least 2s: every message the old node held must
	// be due for redelivery before the pin moves, with a margin of
	// (PinnedTTL-AckWait)/2 for the server's delays (see the package doc).
	// A node's pull requests last a third of that margin. 0 means 30s.
	PinnedTTL time.Duration
	// Client sends the requests. nil means a client of the dispatcher's
	// own, as in Config.
	Client *http.Client
	// Registerer receives the dispatcher's metrics, labelled with the URL.
	// nil means no metrics.
	Registerer prometheus.Registerer
	// Logger receives retries (Debug), dead letters (Warn), consumer
	// trouble (Warn) and local failures (Error). nil means none.
	Logger *slog.Logger
}

// The defaults of JetStreamConfig's zero values (the others are Config's).
const (
	DefaultJetStreamWindow = 256
	DefaultAckWait         = 10 * time.Second
	DefaultPinnedTTL       = 30 * time.Second
)

// PriorityGroup is the priority group of the delivery consumers: the pull
// requests of every node name it.
const PriorityGroup = "webhook"

const (
	minAckWait      = 100 * time.Millisecond
	minMargin       = time.Second // of PinnedTTL over AckWait, halved: see keepAlive
	pinIDHeader     = "Nats-Pin-Id"
	maxEndpointName = 64
)

var endpointName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// JetStreamDispatcher delivers the events of a JetStream event log to one
// URL, fed by one durable pull consumer per partition of the stream, with
// the pinned_client priority policy. The nodes delivering to the URL share
// the partitions: each pulls those it owns among the nodes it hears of,
// the server lets one node at a time deliver a partition, and the
// partitions of a node that stops or dies pass to the others PinnedTTL
// after its last pull (see the package doc). Make it with NewJetStream,
// start it with Run, stop it with Shutdown (or by cancelling Run's
// context). Its methods are safe for concurrent use. It runs once.
type JetStreamDispatcher struct {
	*sender
	cfg       JetStreamConfig
	life      runOnce
	js        natsjs.JetStream
	nc        *nats.Conn
	parts     int
	margin    time.Duration // (PinnedTTL-AckWait)/2: see keepAlive
	pullWait  time.Duration // how long a pull request lasts: margin/3
	pinned    *prometheus.GaugeVec
	redeliv   prometheus.Counter
	nodes     *nodes        // the nodes delivering to the URL, and who owns which partition
	consuming []atomic.Bool // by partition: this node pulls it

	touchMu sync.Mutex // orders the "in progress" sends (see touch); taken before mu

	mu       sync.Mutex
	work     *sync.Cond          // on mu: a call is ready, or draining
	held     map[uint64]*jsEntry // messages received and not finished, by stream sequence
	calls    lanes[*jsEntry]     // held, queued per call
	pins     []pinState          // by partition
	draining bool                // no new messages, no new deliveries
	count    atomic.Int64        // len(held), for Pending without the lock
}

// pinState is what this node knows of a partition's pin.
type pinState struct {
	id       string    // the pin id of the last message received
	lost     string    // a pin id that is no longer this node's
	proven   bool      // a message came with id, and no two pulls since were far apart
	lastPull time.Time // when this node last sent a pull request
	seqPin   string    // the pin id of the last message taken,
	lastSeq  uint64    // and its delivery (consumer) sequence
}

// pinned reports whether this node may keep the partition's messages
// alive at now (see keepAlive).
func (ps *pinState) pinned(now time.Time, fresh time.Duration) bool {
	return ps.proven && ps.id != "" && ps.id != ps.lost && now.Sub(ps.lastPull) < fresh
}

// jsEntry is a message held: received and neither delivered nor
// dead-lettered.
type jsEntry struct {
	rec     eventlog.Record
	msg     natsjs.Msg // the latest delivery of it, which the ack answers
	part    int
	readAt  time.Time
	touched time.Time // when it was received or last said to be in progress
	bad     error     // the body is not an event: dead-letter it
}

// NewJetStream checks cfg and registers the metrics; it makes no request
// (Run creates the consumers). Every error is a *ConfigError naming the
// field.
func NewJetStream(cfg JetStreamConfig) (*JetStreamDispatcher, error) {
	cfg, ep, key, name, cerr := cfg.validate()
	if cerr != nil {
		cerr.in = "JetStreamConfig"
		return nil, cerr
	}
	j := &JetStreamDispatcher{
		sender: newSender(&ep, key, name),
		cfg:    cfg,
		life:   newRunOnce(),
		js:     cfg.Log.JetStream(),
		nc:     cfg.Log.Conn(),
		parts:  cfg.Log.Partitions(),
		margin: (cfg.PinnedTTL - cfg.AckWait) / 2,
		held:   make(map[uint64]*jsEntry),
		calls:  newLanes[*jsEntry](),
	}
	j.pullWait = j.margin / 3
	j.pins = make([]pinState, j.parts)
	j.consuming = make([]atomic.Bool, j.parts)
	j.nodes = newNodes(cfg.Log.Stream(), cfg.Name, cfg.PinnedTTL, j.log)
	j.work = sync.NewCond(&j.mu)
	j.pinned = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "partition_pinned",
		Help: "1 while this node holds the pin of the partition's consumer (it is the node delivering the partition), else 0.",
	}, []string{"partition"})
	for p := range j.parts {
		j.pinned.WithLabelValues(strconv.Itoa(p)).Set(0)
	}
	j.redeliv = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "redeliveries_total",
		Help: "Messages JetStream delivered to this node again (not acknowledged in time, by this node or another); they are sent again.",
	})
	err := j.m.register(cfg.Registerer, name,
		queueDepthGauge(func() float64 { return float64(j.Pending()) }),
		j.pinned, j.redeliv,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "nodes",
			Help: "Nodes this node knows to be delivering to the URL, itself included; the partitions are shared among them.",
		}, func() float64 { return float64(j.nodes.count()) }))
	if err != nil {
		return nil, &ConfigError{Field: "Registerer", Reason: "cannot register the metrics", Err: err, in: "JetStreamConfig"}
	}
	return j, nil
}

// validate checks c and returns a copy with the defaults filled in, its
// endpoint, the parsed secret and the URL as it may be shown.
func (c JetStreamConfig) validate() (JetStreamConfig, endpoint, []byte, string, *ConfigError) {
	e := endpoint{
		URL: c.URL, Secret: c.Secret, DeadLetterPath: c.DeadLetterPath,
		Parallel: c.Parallel, MaxAttempts: c.MaxAttempts,
		BaseBackoff: c.BaseBackoff, MaxBackoff: c.MaxBackoff, Timeout: c.Timeout,
		Client: c.Client, Logger: c.Logger,
	}
	if c.Log == nil {
		return c, e, nil, "", configErr("Log", "required", nil)
	}
	key, name, err := e.validate()
	if err != nil {
		return c, e, nil, "", err
	}
	switch {
	case c.Name == "":
		sum := sha256.Sum256([]byte(c.URL))
		c.Name = "webhook-" + hex.EncodeToString(sum[:6])
	case len(c.Name) > maxEndpointName || !endpointName.MatchString(c.Name):
		return c, e, nil, "", configErr("Name", fmt.Sprintf("%q: want letters, digits, '-' and '_', at most %d", c.Name, maxEndpointName), nil)
	}
	if err := defaultInt("Window", &c.Window, DefaultJetStreamWindow); err != nil {
		return c, e, nil, "", err
	}
	if err := defaultDuration("AckWait", &c.AckWait, DefaultAckWait); err != nil {
		return c, e, nil, "", err
	}
	if c.AckWait < minAckWait {
		return c, e, nil, "", configErr("AckWait", fmt.Sprintf("%v is less than %v", c.AckWait, minAckWait), nil)
	}
	if err := defaultDuration("PinnedTTL", &c.PinnedTTL, DefaultPinnedTTL); err != nil {
		return c, e, nil, "", err
	}
	if c.PinnedTTL < c.AckWait+2*minMargin {
		return c, e, nil, "", configErr("PinnedTTL", fmt.Sprintf(
			"%v is less than AckWait %v + 2s: a node's messages would not all be due for redelivery before another node is pinned", c.PinnedTTL, c.AckWait), nil)
	}
	c.Parallel, c.MaxAttempts = e.Parallel, e.MaxAttempts
	c.BaseBackoff, c.MaxBackoff, c.Timeout = e.BaseBackoff, e.MaxBackoff, e.Timeout
	c.Logger = e.Logger
	return c, e, key, name, nil
}

// ConsumerName returns the name of partition p's durable consumer:
// "<Name>-p<p>".
func (j *JetStreamDispatcher) ConsumerName(p int) string {
	return j.cfg.Name + "-p" + strconv.Itoa(p)
}

// consumerConfig is partition p's consumer, the same on every node.
func (j *JetStreamDispatcher) consumerConfig(p int) natsjs.ConsumerConfig {
	return natsjs.ConsumerConfig{
		Durable:        j.ConsumerName(p),
		Description:    fmt.Sprintf("callfsm webhook delivery to %s, partition %d", j.name, p),
		FilterSubject:  j.cfg.Log.PartitionSubjects(p) + ".*",
		DeliverPolicy:  natsjs.DeliverAllPolicy,
		AckPolicy:      natsjs.AckExplicitPolicy,
		AckWait:        j.cfg.AckWait,
		MaxDeliver:     -1, // never skip an event: MaxAttempts and dead letters bound the tries
		MaxAckPending:  j.cfg.Window,
		ReplayPolicy:   natsjs.ReplayInstantPolicy,
		PriorityPolicy: natsjs.PriorityPolicyPinned,
		PriorityGroups: []string{PriorityGroup},
		PinnedTTL:      j.cfg.PinnedTTL,
	}
}

// Pending returns how many messages this node holds that are neither
// delivered nor dead-lettered: queued, in flight or waiting to retry.
func (j *JetStreamDispatcher) Pending() int { return int(j.count.Load()) }

// createConsumer creates or updates partition p's consumer, trying again
// with backoff, until ctx is done, while NATS does not answer (a node
// started before its NATS servers, or during a blip): only an answer that
// refuses the consumer is an error.
func (j *JetStreamDispatcher) createConsumer(ctx context.Context, p int) (natsjs.Consumer, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		c, err := j.js.CreateOrUpdateConsumer(ctx, j.cfg.Log.Stream(), j.consumerConfig(p))
		if err == nil || !unanswered(err) || ctx.Err() != nil {
			return c, err
		}
		j.log.Warn("webhook: NATS does not answer; creating the consumer again", "consumer", j.ConsumerName(p), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// unanswered reports whether err says NATS did not answer, rather than
// refused.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, natsjs.ErrJetStreamNotEnabled)
}

// Run creates or updates the consumers (one per partition, the same on
// every node), then delivers the partitions this node owns, as the server
// lets it, until ctx is done or Shutdown is called. It owns its goroutines
// (one that follows the other nodes and starts and stops the partitions,
// one per partition owned, Parallel workers, one that keeps held messages
// from expiring) and returns once they have stopped.
//
// Run returns nil when stopped by ctx or Shutdown; an error if a consumer
// is refused at the start (a stream that is gone, a consumer of the same
// name with another DeliverPolicy…; while NATS does not answer, it tries
// again); an error
// wrapping nats.ErrConnectionClosed if the connection was closed under it
// (close it after Shutdown); ErrClosed if Shutdown came first; and an
// error if Run is already running. Later trouble is logged and retried
// with backoff while Run goes on; a consumer deleted under it is created
// again, and, being new, delivers its partition from the start.
func (j *JetStreamDispatcher) Run(ctx context.Context) error {
	hardCtx, drainCtx, hard, err := j.life.begin(ctx)
	if err != nil {
		return err
	}
	defer hard()

	consumers := make([]natsjs.Consumer, j.parts)
	for p := range j.parts {
		consumers[p], err = j.createConsumer(drainCtx, p)
		if err != nil {
			err = fmt.Errorf("webhook: consumer %s of stream %s: %w", j.ConsumerName(p), j.cfg.Log.Stream(), err)
			break
		}
	}
	var sub *nats.Subscription
	if err == nil {
		sub, err = j.nodes.listen(j.nc)
	}
	if err != nil {
		if drainCtx.Err() != nil {
			err = nil // stopped while starting
		}
		err = errors.Join(err, j.sender.close())
		j.life.end(err)
		return err
	}

	drained := make(chan struct{})
	stopDrain := context.AfterFunc(drainCtx, func() {
		defer close(drained)
		j.nodes.bye() // the other nodes take this one's partitions at once
		j.mu.Lock()
		j.draining = true
		j.work.Broadcast()
		j.mu.Unlock()
		j.log.Info("webhook: stopping: no new messages or deliveries; waiting for the requests in progress",
			"pending", j.Pending())
	})

	var superErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if superErr = j.supervise(drainCtx, consumers); superErr != nil {
			hard()
		}
	})
	for range j.cfg.Parallel {
		wg.Go(func() { j.deliverLoop(hardCtx, drainCtx) })
	}
	stopKeep := make(chan struct{})
	var kwg sync.WaitGroup
	kwg.Go(func() { j.keepAlive(stopKeep) })

	wg.Wait()
	hard() // nothing is in progress any more
	if !stopDrain() {
		<-drained // let the callback finish: Run leaves no goroutine behind
	}
	close(stopKeep)
	kwg.Wait()
	_ = sub.Unsubscribe() // fails only on a closed connection, which drops it anyway
	j.flush()
	err = errors.Join(superErr, j.sender.close())
	j.life.end(err)
	return err
}

// Shutdown stops the dispatcher gracefully: it stops pulling messages (a
// pull in progress ends within (PinnedTTL-AckWait)/6; what it brings is
// not delivered) and starting deliveries, lets the requests in progress
// finish (each ends
// delivered and acknowledged, dead-lettered and acknowledged, or left
// unacknowledged if it needs a retry: backoff waits are not served) and
// returns once Run has returned. If ctx is done first, the requests in
// progress are cancelled and Shutdown returns ctx.Err() after Run has
// returned.
//
// The messages left unacknowledged go to the node that takes the
// partitions over, PinnedTTL after this node's last pull, in stream order
// and before any newer message. Shutdown is idempotent; called before Run,
// it makes Run return ErrClosed. Otherwise it returns what Run returned.
func (j *JetStreamDispatcher) Shutdown(ctx context.Context) error { return j.life.shutdown(ctx) }

// partRun is a partition this node consumes: the goroutine running
// consume for it.
type partRun struct {
	stop     context.CancelFunc
	done     chan struct{} // closed when consume has returned
	err      error         // what it returned, once done is closed
	stopping bool          // stop was called: the partition is released
}

// supervise runs consume for the partitions this node owns (see
// jsnodes.go) and stops it for those it no longer owns, until ctx ends;
// then it stops them all. It returns the error of a consume that failed
// (a closed connection).
func (j *JetStreamDispatcher) supervise(ctx context.Context, consumers []natsjs.Consumer) error {
	runs := make([]*partRun, j.parts)
	ended := make(chan struct{}, 1)
	start := func(p int) {
		pctx, stop := context.WithCancel(ctx)
		r := &partRun{stop: stop, done: make(chan struct{})}
		runs[p] = r
		cons := consumers[p]
		consumers[p] = nil // a later run gets a fresh handle: no stale pin id
		go func() {
			defer func() {
				close(r.done)
				select {
				case ended <- struct{}{}:
				default:
				}
			}()
			r.err = j.consume(pctx, p, cons)
			j.abandon(p)
		}()
		j.consuming[p].Store(true)
	}
	var errs []error
	reap := func() {
		for p, r := range runs {
			if r == nil {
				continue
			}
			select {
			case <-r.done:
				r.stop()
				if r.err != nil {
					errs = append(errs, r.err)
				}
				runs[p] = nil
				j.consuming[p].Store(false)
			default:
			}
		}
	}
	stopAll := func() {
		for _, r := range runs {
			if r != nil {
				r.stop()
				<-r.done
			}
		}
		reap()
	}

	// A roll call first, so that a node starting among others does not
	// take every partition for a moment.
	j.nodes.hello()
	if sleepCtx(ctx, j.nodes.every/2) != nil {
		return nil
	}
	tick := time.NewTicker(j.nodes.every)
	defer tick.Stop()
	for {
		reap()
		if len(errs) > 0 {
			stopAll()
			return errors.Join(errs...)
		}
		owned := j.nodes.owned(j.parts)
		for p, r := range runs {
			switch {
			case owned[p] && r == nil:
				start(p)
			case !owned[p] && r != nil && !r.stopping:
				// Released: stop pulling. The server moves the pin to
				// the owner PinnedTTL after this node's last pull; the
				// messages held here are left to expire before then.
				r.stopping = true
				r.stop()
				j.consuming[p].Store(false)
			}
		}
		select {
		case <-ctx.Done():
			stopAll()
			return errors.Join(errs...)
		case <-tick.C:
			j.nodes.hello()
			j.nodes.expire()
		case <-j.nodes.changed:
		case <-ended:
		}
	}
}

// consume pulls partition p until ctx ends, creating its consumer (again)
// when cons is nil or gone. It sends pull requests back to back, each
// lasting at most pullWait, and notes when it sent each (see keepAlive).
// It returns an error only for a closed connection; once ctx ends, it
// returns when the pull in progress has ended.
func (j *JetStreamDispatcher) consume(ctx context.Context, p int, cons natsjs.Consumer) error {
	name := j.ConsumerName(p)
	failures := 0
	retry := func(what string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		failures++
		wait := j.backoff(failures)
		j.log.Warn("webhook: "+what+"; retrying", "consumer", name, "err", err, "retry_in", wait)
		return j.sleep(ctx, wait) == nil
	}
	// Stop keeping this partition's messages alive as soon as this node
	// stops pulling it: the pin moves PinnedTTL after the last pull, and
	// by then every message held here must be due for redelivery.
	defer j.losePin(p)
	for {
		if j.nc.IsClosed() {
			return fmt.Errorf("webhook: consumer %s: %w", name, nats.ErrConnectionClosed)
		}
		if ctx.Err() != nil {
			return nil
		}
		if cons == nil {
			c, err := j.js.CreateOrUpdateConsumer(ctx, j.cfg.Log.Stream(), j.consumerConfig(p))
			if err != nil {
				if !retry("creating the consumer failed", err) {
					return nil
				}
				continue
			}
			cons = c
		}
		// The pull is not cut short when ctx ends: a message the server
		// sends before the pull's end must reach receive (a pull ends on
		// the client's side only a second after the server's end).
		j.notePull(p, time.Now())
		batch, err := cons.Fetch(j.cfg.Window, natsjs.FetchMaxWait(j.pullWait), natsjs.FetchPriorityGroup(PriorityGroup))
		if err != nil {
			if !retry("pulling failed", err) {
				return nil
			}
			continue
		}
		lost := false
		for m := range batch.Messages() {
			if !lost && !j.receive(p, m) {
				lost = true // and the rest of the pull: they expire, and come back in order
			}
		}
		if lost {
			if j.resync(ctx, p) != nil {
				return nil
			}
			continue
		}
		switch err := batch.Error(); {
		case err == nil:
			failures = 0
		case errors.Is(err, natsjs.ErrPinIDMismatch):
			// Another node has the partition now: stop keeping the
			// messages held here alive, so that the server hands them to
			// it, in order, before newer ones. The next pull asks anew.
			j.losePin(p)
			j.log.Info("webhook: partition pinned to another node", "consumer", name)
		case errors.Is(err, natsjs.ErrConsumerDeleted), errors.Is(err, natsjs.ErrConsumerNotFound):
			cons = nil
			if !retry("the consumer is gone", err) {
				return nil
			}
		default:
			if !j.nc.IsClosed() && !retry("pulling failed", err) {
				return nil
			}
		}
	}
}

// abandon drops the messages of partition p held here that no worker has
// started on, unacknowledged: once the pin moves, the server sends them
// to the node that has it, before newer ones. A message in flight stays
// until its delivery ends.
func (j *JetStreamDispatcher) abandon(p int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls.abandon(func(e *jsEntry) bool { return e.part == p },
		func(e *jsEntry) { delete(j.held, e.rec.Seq) })
	j.count.Store(int64(len(j.held)))
}

// notePinLocked records the pin id of a message of partition p: proof
// that the pin was this node's when the server sent it. Lock held.
func (j *JetStreamDispatcher) notePinLocked(p int, id string) {
	ps := &j.pins[p]
	if id == "" || id == ps.lost {
		return // a message sent before the pin was lost
	}
	ps.id, ps.proven = id, true
	j.pinned.WithLabelValues(strconv.Itoa(p)).Set(1)
}

// notePull records that a pull request for partition p is sent at now. A
// pull that comes AckWait+margin or more after the one before may find
// the pin timed out: the pin is not trusted again before a message
// proves it.
func (j *JetStreamDispatcher) notePull(p int, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ps := &j.pins[p]
	if now.Sub(ps.lastPull) >= j.cfg.AckWait+j.margin {
		ps.proven = false
	}
	ps.lastPull = now
}

// losePin records that partition p is not (or no longer) pinned here.
func (j *JetStreamDispatcher) losePin(p int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ps := &j.pins[p]
	ps.lost, ps.proven = ps.id, false
	j.pinned.WithLabelValues(strconv.Itoa(p)).Set(0)
}

// receive takes a message of partition p from a pull: it queues it
// behind its call's, or, for a message already held (a redelivery), keeps
// the newer delivery to acknowledge. It never blocks: the server sends at
// most Window unacknowledged messages of a partition.
//
// It returns false, and takes nothing, if the message shows that an
// earlier delivery to this node never arrived: its delivery sequence is
// not the one after the last message's under the same pin (a pull that
// ended on the client's side before the server's last message reached
// it). Queuing it would deliver a call's newer event before the lost one.
func (j *JetStreamDispatcher) receive(p int, m natsjs.Msg) bool {
	md, err := m.Metadata()
	if err != nil { // not a JetStream message: cannot happen on a consumer's inbox
		j.log.Error("webhook: a message without metadata", "consumer", j.ConsumerName(p), "subject", m.Subject(), "err", err)
		return true
	}
	pin := m.Headers().Get(pinIDHeader)
	now := j.now()
	e := &jsEntry{
		rec:     eventlog.Record{Seq: md.Sequence.Stream},
		msg:     m,
		part:    p,
		readAt:  now,
		touched: now,
	}
	e.rec.Event, e.bad = event.Decode(m.Data())
	callID := e.rec.Event.CallID
	if e.bad != nil {
		callID = callOfSubject(m.Subject())
	}

	ok, restamp := j.receiveLocked(p, m, md, pin, e, callID, now)
	if restamp != nil {
		// After the sends of a tick that may have stamped the call's
		// earlier messages after the server sent this one: touch holds
		// touchMu while it sends.
		j.touchMu.Lock()
		j.inProgress(restamp)
		j.touchMu.Unlock()
	}
	return ok
}

// receiveLocked is receive under mu; it also returns the messages to tell
// in progress (see restampLocked).
func (j *JetStreamDispatcher) receiveLocked(p int, m natsjs.Msg, md *natsjs.MsgMetadata, pin string, e *jsEntry, callID int64, now time.Time) (bool, []natsjs.Msg) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.draining {
		return true, nil // left unacknowledged, for the node that takes over
	}
	ps := &j.pins[p]
	if pin != "" && pin == ps.seqPin && md.Sequence.Consumer != ps.lastSeq+1 {
		return false, nil
	}
	ps.seqPin, ps.lastSeq = pin, md.Sequence.Consumer
	j.notePinLocked(p, pin)
	if md.NumDelivered > 1 {
		j.redeliv.Inc()
	}
	var restamp []natsjs.Msg
	if old := j.held[e.rec.Seq]; old != nil {
		old.msg, old.touched = m, now
		restamp = j.restampLocked(p, pin, callID, old, now)
	} else {
		j.held[e.rec.Seq] = e
		j.count.Store(int64(len(j.held)))
		if j.calls.push(callID, e) {
			j.work.Signal()
		}
		restamp = j.restampLocked(p, pin, callID, e, now)
	}
	return true, restamp
}

// restampLocked returns the messages to tell in progress now that e, of
// partition p and call callID, was received under pin: e and those after
// it in the call, if the call holds more than e. The server stamped e when
// it sent it; a tick may have stamped the call's earlier messages later
// than that (it ran while e was on its way), and the call's later messages
// earlier (e is sent again). Told in progress again after the tick, in
// order, the call's stamps go up along it once more (see touch). Only
// under a pin the message proves: the one keepAlive vouches for. Lock held.
func (j *JetStreamDispatcher) restampLocked(p int, pin string, callID int64, e *jsEntry, now time.Time) []natsjs.Msg {
	l, ps := j.calls.calls[callID], &j.pins[p]
	if pin == "" || pin != ps.id || pin == ps.lost || l == nil || len(l.items) < 2 {
		return nil
	}
	i := slices.Index(l.items, e)
	if i < 0 {
		return nil
	}
	msgs := make([]natsjs.Msg, 0, len(l.items)-i)
	for _, e := range l.items[i:] {
		e.touched = now
		msgs = append(msgs, e.msg)
	}
	return msgs
}

// resync makes partition p whole again after a lost delivery: it drops
// what this node holds of p but its requests in flight, stops keeping
// those alive, and waits, without pulling, until they and the lost one
// are due for redelivery; the next pulls get them back in stream order.
// The pin stays this node's meanwhile (the wait is shorter than
// PinnedTTL).
func (j *JetStreamDispatcher) resync(ctx context.Context, p int) error {
	j.mu.Lock()
	ps := &j.pins[p]
	ps.proven, ps.seqPin, ps.lastSeq = false, "", 0
	j.mu.Unlock()
	j.abandon(p)
	j.log.Warn("webhook: a message of the partition was lost on its way; waiting for the server to send it again",
		"consumer", j.ConsumerName(p), "wait", j.cfg.AckWait+j.margin/2)
	return sleepCtx(ctx, j.cfg.AckWait+j.margin/2)
}

// callOfSubject is the call_id in a subject <prefix>.<partition>.<call_id>,
// or 0.
func callOfSubject(subject string) int64 {
	id, _ := strconv.ParseInt(subject[strings.LastIndexByte(subject, '.')+1:], 10, 64)
	return id
}

// deliverLoop is a worker: it takes a call whose next message is ready,
// delivers it, acknowledges it, and queues the call again if it has more.
func (j *JetStreamDispatcher) deliverLoop(hardCtx, drainCtx context.Context) {
	for {
		j.mu.Lock()
		for !j.calls.hasReady() && !j.draining {
			j.work.Wait()
		}
		// drainCtx is done before the callback that sets draining has run.
		if j.draining || drainCtx.Err() != nil {
			j.mu.Unlock()
			return
		}
		q, e := j.calls.take()
		var data []byte
		if e.bad != nil {
			data = e.msg.Data() // under mu: receive may swap e.msg for a redelivery
		}
		j.mu.Unlock()

		var ok bool
		if e.bad != nil {
			ok = j.deadLetter(drainCtx, DeadLetter{
				WebhookID: EventID(e.rec.Seq),
				Seq:       e.rec.Seq,
				CallID:    q.id,
				Reason:    "not a call event: " + e.bad.Error(),
				Payload:   rawJSON(data),
			})
		} else {
			ok = j.deliver(hardCtx, drainCtx, e.rec, e.readAt)
		}
		if !ok {
			continue // stopping: left unacknowledged, for the node that takes over
		}
		j.mu.Lock()
		msg := e.msg
		delete(j.held, e.rec.Seq)
		j.count.Store(int64(len(j.held)))
		if j.calls.finish(q) {
			j.work.Signal()
		}
		j.mu.Unlock()
		// Delivered or dead-lettered: acknowledge. If the ack is lost the
		// message comes again and is sent again (at least once).
		if err := msg.Ack(); err != nil {
			j.log.Warn("webhook: acknowledging failed; the event will be sent again",
				"webhook_id", EventID(e.rec.Seq), "err", err)
		}
	}
}

// rawJSON is b if it is JSON, else b as a JSON string.
func rawJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}

// keepAlive tells the server, every AckWait/3, that the messages held for
// more than AckWait/6 are in progress (with the rest of their calls', see
// touch), so that none is delivered again
// while this node holds it: queued behind its call's, in flight, or
// waiting to retry. It does so for a partition only while this node can
// vouch for its pin: a message proved it, the server has not said it is
// another's, this node sent a pull less than margin ago and none of its
// pulls since the proof came AckWait+margin or more after the one
// before. Otherwise the messages are left to expire, before the pin can
// move: the node pinned next must get them before newer ones.
func (j *JetStreamDispatcher) keepAlive(stop <-chan struct{}) {
	t := time.NewTicker(j.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		j.touch(time.Now())
	}
}

// touch is a tick of keepAlive at now. It keeps a call's held messages
// alive together, in the order the call delivers them: if one is due (held
// for AckWait/6 or more), all are told in progress, earliest first, so the
// server's timestamps of a call's messages never go down along the call.
// That is what keeps the order once they expire: the server puts expired
// messages on its redelivery queue a batch at a time, sorted only within
// the batch, and the node pinned next gets them in the queue's order; a
// call's later message stamped before its earlier one would come first.
func (j *JetStreamDispatcher) touch(now time.Time) {
	every := j.cfg.AckWait / 3
	var due []natsjs.Msg
	j.touchMu.Lock()
	defer j.touchMu.Unlock()
	j.mu.Lock()
	for _, l := range j.calls.calls {
		if !j.pins[l.items[0].part].pinned(now, j.margin) ||
			!slices.ContainsFunc(l.items, func(e *jsEntry) bool { return now.Sub(e.touched) >= every/2 }) {
			continue
		}
		for _, e := range l.items {
			e.touched = now
			due = append(due, e.msg)
		}
	}
	j.mu.Unlock()
	j.inProgress(due)
}

// inProgress tells the server that msgs are in progress, in order.
func (j *JetStreamDispatcher) inProgress(msgs []natsjs.Msg) {
	for _, m := range msgs {
		if err := m.InProgress(); err != nil && !errors.Is(err, natsjs.ErrMsgAlreadyAckd) {
			j.log.Debug("webhook: telling the server a message is in progress failed", "err", err)
		}
	}
}

// flush sends the acknowledgements still buffered in the connection, so
// that they reach the server before Run returns.
func (j *JetStreamDispatcher) flush() {
	if !j.nc.IsConnected() {
		return
	}
	if err := j.nc.FlushTimeout(min(j.cfg.Timeout, time.Second)); err != nil {
		j.log.Warn("webhook: flushing the acknowledgements failed; unacknowledged events will be sent again", "err", err)
	}
}
