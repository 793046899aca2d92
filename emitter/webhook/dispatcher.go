package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callfsm/callfsm/emitter/eventlog"
)

// ErrClosed is returned by Run after Shutdown.
var ErrClosed = errors.New("webhook: dispatcher shut down")

// readBatch is the most records one Read asks the log for.
const readBatch = 256

// Dispatcher delivers the events of one log to one URL. Make it with New,
// start it with Run, stop it with Shutdown (or by cancelling Run's
// context). Its methods are safe for concurrent use. A Dispatcher runs once:
// to deliver again, make a new one on the same cursor file.
type Dispatcher struct {
	cfg    Config
	key    []byte
	name   string // the URL as shown (redactURL)
	client *http.Client
	own    bool // client is ours: close its idle connections when done
	log    *slog.Logger
	m      *metrics

	// Injected for tests; set by New.
	now        func() time.Time
	sleep      func(ctx context.Context, d time.Duration) error
	jitter     func(n int64) int64 // uniform in [0, n]
	flushEvery time.Duration

	cursor  atomic.Uint64 // first Seq not finished
	pending atomic.Int64  // records in the window not finished

	mu       sync.Mutex
	work     *sync.Cond // on mu: ready is not empty, or draining
	room     *sync.Cond // on mu: the window shrank, or draining
	state    runState
	next     uint64               // the next Seq to read
	win      []*entry             // records read and not behind the cursor, in Seq order
	calls    map[int64]*callQueue // calls with records in win, by call_id
	ready    []*callQueue         // calls whose first record waits for a worker
	draining bool                 // no new reads, no new deliveries
	drain    context.CancelFunc   // starts draining (Shutdown)
	hard     context.CancelFunc   // cancels requests in progress
	done     chan struct{}        // closed when Run has returned (or Shutdown before Run)
	runErr   error

	persistMu sync.Mutex
	persisted uint64 // the cursor last written to CursorPath

	dlMu   sync.Mutex
	dl     *os.File // the dead-letter file, opened at the first dead letter
	dlTorn bool     // the last write to it failed
}

type runState int

const (
	stateIdle runState = iota
	stateRunning
	stateStopped
)

// entry is a record in the window.
type entry struct {
	rec    eventlog.Record
	readAt time.Time
	done   bool // delivered or dead-lettered
}

// callQueue holds one call's records in the window, in Seq order. The
// first is the one being delivered (or waiting for a worker); the next
// waits until it is finished.
type callQueue struct {
	id    int64
	items []*entry
}

// New checks cfg, reads the cursor and registers the metrics. Every error
// is a *ConfigError naming the field. The cursor may not be past the end of
// the log (LastSeq()+1): that is the cursor of another log, and delivering
// from there would skip events; remove the file to start from 1.
func New(cfg Config) (*Dispatcher, error) {
	cfg, key, name, err := cfg.validate()
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
		cfg:        cfg,
		key:        key,
		name:       name,
		client:     cfg.Client,
		log:        cfg.Logger.With("url", name),
		now:        time.Now,
		sleep:      sleepCtx,
		jitter:     func(n int64) int64 { return rand.Int64N(n + 1) },
		flushEvery: 100 * time.Millisecond,
		next:       cursor,
		calls:      make(map[int64]*callQueue),
		done:       make(chan struct{}),
		persisted:  cursor,
	}
	if d.client == nil {
		d.client, d.own = newClient(cfg.Parallel), true
	}
	d.work = sync.NewCond(&d.mu)
	d.room = sync.NewCond(&d.mu)
	d.cursor.Store(cursor)
	d.m, err = newMetrics(cfg.Registerer, name,
		func() float64 { return float64(d.Pending()) },
		func() float64 {
			last, c := cfg.Log.LastSeq(), d.Cursor()
			if last < c {
				return 0
			}
			return float64(last + 1 - c)
		})
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
	d.mu.Lock()
	switch d.state {
	case stateRunning:
		d.mu.Unlock()
		return errors.New("webhook: Run called while running")
	case stateStopped:
		d.mu.Unlock()
		return ErrClosed
	}
	d.state = stateRunning
	hardCtx, hard := context.WithCancel(ctx)
	drainCtx, drain := context.WithCancel(hardCtx)
	d.hard, d.drain = hard, drain
	d.mu.Unlock()
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
	err := errors.Join(readErr, d.persist())
	if d.own {
		d.client.CloseIdleConnections()
	}
	d.dlMu.Lock()
	if d.dl != nil {
		if cerr := d.dl.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		d.dl = nil
	}
	d.dlMu.Unlock()

	d.mu.Lock()
	d.state = stateStopped
	d.runErr = err
	close(d.done)
	d.mu.Unlock()
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
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	switch d.state {
	case stateIdle:
		d.state = stateStopped
		close(d.done)
	case stateRunning:
		d.drain()
	}
	hard := d.hard
	d.mu.Unlock()

	select {
	case <-d.done:
	case <-ctx.Done():
		select {
		case <-d.done: // stopped in time after all
			return d.result()
		default:
		}
		if hard != nil {
			hard()
		}
		<-d.done
		return ctx.Err()
	}
	return d.result()
}

func (d *Dispatcher) result() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runErr
}

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
		q := d.calls[r.Event.CallID]
		if q == nil {
			q = &callQueue{id: r.Event.CallID}
			d.calls[q.id] = q
			d.ready = append(d.ready, q)
			d.work.Signal()
		}
		q.items = append(q.items, e)
	}
	d.pending.Add(int64(n))
	d.advanceLocked() // a gap in the log's Seqs moves the cursor
}

// deliverLoop is a worker: it takes a call whose next record is ready,
// delivers that record, and queues the call again if it has more.
func (d *Dispatcher) deliverLoop(hardCtx, drainCtx context.Context) {
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.draining {
			d.work.Wait()
		}
		// drainCtx is done before the callback that sets draining has run.
		if d.draining || drainCtx.Err() != nil {
			d.mu.Unlock()
			return
		}
		q := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		e := q.items[0]
		d.mu.Unlock()

		if !d.deliver(hardCtx, drainCtx, e) {
			continue // stopping: the record stays unfinished, behind the cursor
		}
		d.mu.Lock()
		e.done = true
		q.items[0] = nil
		q.items = q.items[1:]
		if len(q.items) > 0 {
			d.ready = append(d.ready, q)
			d.work.Signal()
		} else {
			delete(d.calls, q.id)
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

// backoff is the wait before attempt n+1: full jitter over an exponential
// ceiling, min(MaxBackoff, BaseBackoff·2^(n-1)).
func (d *Dispatcher) backoff(n int) time.Duration {
	ceiling := d.cfg.MaxBackoff
	// c>>(n-1) == BaseBackoff: the shift did not overflow.
	if c := d.cfg.BaseBackoff << (n - 1); c > 0 && c < ceiling && c>>(n-1) == d.cfg.BaseBackoff {
		ceiling = c
	}
	return time.Duration(d.jitter(int64(ceiling)))
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
