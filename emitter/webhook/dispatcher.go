package webhook

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callfsm/callfsm/emitter/eventlog"
)

// readBatch is the most records one Read asks the log for.
const readBatch = 256

// Dispatcher delivers the events of one log to one URL. Make it with New,
// start it with Run, stop it with Shutdown (or by cancelling Run's
// context). Its methods are safe for concurrent use. A Dispatcher runs once:
// to deliver again, make a new one on the same cursor file.
type Dispatcher struct {
	*sender
	cfg  Config
	life runOnce

	flushEvery time.Duration // injected for tests; set by New

	cursor  atomic.Uint64 // first Seq not finished
	pending atomic.Int64  // records in the window not finished

	mu       sync.Mutex
	work     *sync.Cond // on mu: a call is ready, or draining
	room     *sync.Cond // on mu: the window shrank, or draining
	next     uint64     // the next Seq to read
	win      []*entry   // records read and not behind the cursor, in Seq order
	calls    lanes[*entry]
	draining bool // no new reads, no new deliveries

	persistMu sync.Mutex
	persisted uint64 // the cursor last written to CursorPath
}

// entry is a record in the window.
type entry struct {
	rec    eventlog.Record
	readAt time.Time
	done   bool // delivered or dead-lettered
}

// New checks cfg, reads the cursor and registers the metrics. Every error
// is a *ConfigError naming the field. The cursor may not be past the end of
// the log (LastSeq()+1): that is the cursor of another log, and delivering
// from there would skip events; remove the file to start from 1.
func New(cfg Config) (*Dispatcher, error) {
	cfg, ep, key, name, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cursor, err := readCursor(cfg.CursorPath)
	if err != nil {
		return nil, configErr("CursorPath", "unreadable", err)
	}
	if last := cfg.Log.LastSeq(); cursor > last+1 {
		return nil, configErr("CursorPath", fmt.Sprintf(
			"cursor %d is past the end of the log (last Seq %d): the cursor of another log? Remove %s to deliver this log from the start",
			cursor, last, cfg.CursorPath), nil)
	}
	d := &Dispatcher{
		sender:     newSender(&ep, key, name),
		cfg:        cfg,
		life:       newRunOnce(),
		flushEvery: 100 * time.Millisecond,
		next:       cursor,
		calls:      newLanes[*entry](),
		persisted:  cursor,
	}
	d.work = sync.NewCond(&d.mu)
	d.room = sync.NewCond(&d.mu)
	d.cursor.Store(cursor)
	err = d.m.register(cfg.Registerer, name,
		queueDepthGauge(func() float64 { return float64(d.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cursor_lag",
			Help: "Events in the log not yet delivered or dead-lettered: the log's last sequence number minus the cursor's predecessor.",
		}, func() float64 {
			last, c := cfg.Log.LastSeq(), d.Cursor()
			if last < c {
				return 0
			}
			return float64(last + 1 - c)
		}))
	if err != nil {
		return nil, configErr("Registerer", "cannot register the metrics", err)
	}
	return d, nil
}

// Cursor returns the first Seq not yet delivered or dead-lettered: every
// record before it is finished. It is what a restart resumes from, once
// persisted.
func (d *Dispatcher) Cursor() uint64 { return d.cursor.Load() }

// Pending returns how many records read from the log are not yet delivered
// or dead-lettered. It never exceeds Config.Window.
func (d *Dispatcher) Pending() int { return int(d.pending.Load()) }

// Run delivers the log's events from the cursor on, as they are appended,
// until ctx is done or Shutdown is called. It owns its goroutines (one
// reader, Config.Parallel workers, one that persists the cursor every
// 100 ms) and returns once they have stopped and the cursor is persisted.
//
// Run returns nil when stopped by ctx or Shutdown; an error wrapping
// eventlog.ErrClosed if the log was closed under it (close the log after
// Shutdown); the error of the last cursor write if it failed; ErrClosed if
// Shutdown came first; and an error if Run is already running.
func (d *Dispatcher) Run(ctx context.Context) error {
	hardCtx, drainCtx, hard, err := d.life.begin(ctx)
	if err != nil {
		return err
	}
	defer hard()

	drained := make(chan struct{})
	stopDrain := context.AfterFunc(drainCtx, func() {
		defer close(drained)
		d.mu.Lock()
		d.draining = true
		d.work.Broadcast()
		d.room.Broadcast()
		d.mu.Unlock()
		d.log.Info("webhook: stopping: no new deliveries; waiting for the requests in progress",
			"cursor", d.Cursor(), "pending", d.Pending())
	})

	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if readErr = d.read(drainCtx); readErr != nil {
			hard()
		}
	})
	for range d.cfg.Parallel {
		wg.Go(func() { d.deliverLoop(hardCtx, drainCtx) })
	}
	stopPersist := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() { d.persistLoop(stopPersist) })

	wg.Wait()
	hard() // nothing is in progress any more
	if !stopDrain() {
		<-drained // let the callback finish: Run leaves no goroutine behind
	}
	close(stopPersist)
	pwg.Wait()
	err = errors.Join(readErr, d.persist(), d.sender.close())
	d.life.end(err)
	return err
}

// Shutdown stops the Dispatcher gracefully: it stops reading the log and
// starting deliveries, lets the requests in progress finish (each ends
// delivered, dead-lettered, or left for the next run if it needs a retry:
// backoff waits are not served), persists the cursor and returns once Run
// has returned. If ctx is done first, the requests in progress are
// cancelled (those events will be sent again by the next run) and Shutdown
// returns ctx.Err() after Run has returned.
//
// Records left undelivered stay behind the cursor, so a new Dispatcher on
// the same cursor file delivers them. Shutdown is idempotent; called before
// Run, it makes Run return ErrClosed. Otherwise it returns what Run
// returned.
func (d *Dispatcher) Shutdown(ctx context.Context) error { return d.life.shutdown(ctx) }

// read tails the log into the window until ctx is done or draining starts.
// It returns an error only for a closed log.
func (d *Dispatcher) read(ctx context.Context) error {
	failures := 0
	for {
		d.mu.Lock()
		for len(d.win) >= d.cfg.Window && !d.draining {
			d.room.Wait()
		}
		if d.draining || ctx.Err() != nil {
			d.mu.Unlock()
			return nil
		}
		from, room := d.next, d.cfg.Window-len(d.win)
		d.mu.Unlock()

		recs, err := d.cfg.Log.Read(ctx, from, min(room, readBatch))
		if err == nil && len(recs) == 0 {
			if err = d.cfg.Log.Wait(ctx, from-1); err == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, eventlog.ErrClosed) {
				return fmt.Errorf("webhook: reading the event log: %w", err)
			}
			failures++
			wait := d.backoff(failures)
			d.log.Error("webhook: reading the event log failed; retrying", "from", from, "err", err, "retry_in", wait)
			if d.sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		failures = 0
		d.add(recs[:min(len(recs), room)])
	}
}

// add puts records into the window and queues them behind their call's.
func (d *Dispatcher) add(recs []eventlog.Record) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range recs {
		if r.Seq < d.next {
			continue // not asked for: a log that returns too much
		}
		e := &entry{rec: r, readAt: now}
		d.win = append(d.win, e)
		d.next = r.Seq + 1
		n++
		if d.calls.push(r.Event.CallID, e) {
			d.work.Signal()
		}
	}
	d.pending.Add(int64(n))
	d.advanceLocked() // a gap in the log's Seqs moves the cursor
}

// deliverLoop is a worker: it takes a call whose next record is ready,
// delivers that record, and queues the call again if it has more.
func (d *Dispatcher) deliverLoop(hardCtx, drainCtx context.Context) {
	for {
		d.mu.Lock()
		for !d.calls.hasReady() && !d.draining {
			d.work.Wait()
		}
		// drainCtx is done before the callback that sets draining has run.
		if d.draining || drainCtx.Err() != nil {
			d.mu.Unlock()
			return
		}
		q, e := d.calls.take()
		d.mu.Unlock()

		if !d.deliver(hardCtx, drainCtx, e.rec, e.readAt) {
			continue // stopping: the record stays unfinished, behind the cursor
		}
		d.mu.Lock()
		e.done = true
		if d.calls.finish(q) {
			d.work.Signal()
		}
		d.pending.Add(-1)
		d.advanceLocked()
		d.mu.Unlock()
	}
}

// advanceLocked drops the finished prefix of the window and moves the
// cursor to the first unfinished record (or the next to read).
func (d *Dispatcher) advanceLocked() {
	i := 0
	for i < len(d.win) && d.win[i].done {
		d.win[i] = nil
		i++
	}
	if i > 0 {
		d.win = d.win[i:]
		d.room.Signal()
	}
	c := d.next
	if len(d.win) > 0 {
		c = d.win[0].rec.Seq
	}
	d.cursor.Store(c)
}

// persistLoop writes the cursor every flushEvery while it moves.
func (d *Dispatcher) persistLoop(stop <-chan struct{}) {
	t := time.NewTicker(d.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			_ = d.persist() // logged; retried at the next tick
		}
	}
}

// persist writes the cursor to CursorPath if it moved since the last write.
func (d *Dispatcher) persist() error {
	d.persistMu.Lock()
	defer d.persistMu.Unlock()
	c := d.cursor.Load()
	if c == d.persisted {
		return nil
	}
	if err := writeCursor(d.cfg.CursorPath, c); err != nil {
		d.log.Error("webhook: writing the cursor failed", "path", d.cfg.CursorPath, "cursor", c, "err", err)
		return fmt.Errorf("webhook: writing the cursor: %w", err)
	}
	d.persisted = c
	return nil
}
