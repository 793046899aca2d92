package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

// SyncPolicy says when File calls fsync.
type SyncPolicy int

const (
	// SyncAlways fsyncs before Append returns; appends that wait together
	// share one fsync (group commit). Nothing acknowledged is lost, even on
	// power loss.
	SyncAlways SyncPolicy = iota
	// SyncInterval writes each event to the file before Append returns (it
	// survives a crash of the process) and fsyncs every FileConfig.Interval
	// (a power loss may lose that much).
	SyncInterval
	// SyncNever leaves flushing to the operating system.
	SyncNever
)

// ParseSyncPolicy parses "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("eventlog: unknown sync policy %q (want always, interval or never)", s)
}

// String returns the policy's name.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// FileConfig configures a File. The zero value fsyncs every append.
type FileConfig struct {
	Sync SyncPolicy
	// Interval is the fsync period of SyncInterval; 0 means 100 ms.
	Interval time.Duration
	// Logger reports a torn last line truncated at open. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// indexEvery is the spacing of File's sparse index of line offsets.
const indexEvery = 256

// recentRecords is how many of the last appended records File keeps in
// memory for readers following the tail.
const recentRecords = 4096

// maxLine bounds one line of the log when reading it back.
const maxLine = 1 << 20

// File is a Log in a JSON Lines file: one seed payload per line, in append
// order, the line number being the sequence number. It is what `callfsm
// check` reads.
//
// OpenFile checks the whole file. A last line without its newline is a
// write torn by a crash: it is truncated (and logged), never fatal. Any
// other line that is not a valid event is an error naming the line, so that
// nothing is silently dropped.
type File struct {
	cfg  FileConfig
	path string

	mu      sync.Mutex // serialises writes; guards the fields below
	f       *os.File
	size    int64
	last    uint64  // last written seq
	index   []int64 // index[i] = offset of record i*indexEvery+1
	err     error   // sticky write error: the log refuses appends
	closed  bool
	scratch []byte
	// recent holds the last records appended by this process, at
	// (seq-1) % recentRecords, from seq recentFrom on: readers following
	// the tail (SSE, history, webhooks) get them without a disk read or a
	// decode.
	recent     []Record
	recentFrom uint64

	syncMu sync.Mutex // one fsync at a time
	synced uint64     // last seq known fsynced; guarded by syncMu

	durable Watermark // the last seq readers may see

	stop chan struct{} // closed by Close; ends the interval syncer
	wg   sync.WaitGroup
}

var _ Log = (*File)(nil)

// OpenFile opens (creating it if needed) the log at path and checks it.
func OpenFile(path string, cfg FileConfig) (*File, error) {
	switch cfg.Sync {
	case SyncAlways, SyncInterval, SyncNever:
	default:
		return nil, fmt.Errorf("eventlog: unknown sync policy %v", cfg.Sync)
	}
	if cfg.Interval < 0 {
		return nil, errors.New("eventlog: FileConfig.Interval is negative")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// 0600: payloads hold personal data (names, e-mail addresses).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	l := &File{cfg: cfg, path: path, f: f, stop: make(chan struct{})}
	if err := l.load(); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(l.size, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	l.synced = l.last
	l.durable.Raise(l.last)
	l.recent, l.recentFrom = make([]Record, recentRecords), l.last+1
	if cfg.Sync == SyncInterval {
		l.wg.Add(1)
		go l.syncEvery(cfg.Interval)
	}
	return l, nil
}

// load scans the file: counts records, builds the index, truncates a torn
// last line.
func (l *File) load() error {
	r := bufio.NewReaderSize(l.f, 64<<10)
	var off int64
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: copy each piece before the
			// next read overwrites it.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > maxLine {
					return fmt.Errorf("eventlog: %s:%d: line longer than %d bytes", l.path, line, maxLine)
				}
				b, err = r.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if err == io.EOF {
			if len(b) > 0 {
				l.cfg.Logger.Warn("eventlog: truncating a torn last line (an append cut short by a crash)",
					"path", l.path, "line", line, "bytes", len(b))
				if err := l.f.Truncate(off); err != nil {
					return fmt.Errorf("eventlog: truncate torn line: %w", err)
				}
				if err := l.f.Sync(); err != nil {
					return fmt.Errorf("eventlog: %w", err)
				}
			}
			l.size = off
			return nil
		}
		if err != nil {
			return fmt.Errorf("eventlog: %s: %w", l.path, err)
		}
		if _, err := event.Decode(bytes.TrimRight(b, "\r\n")); err != nil {
			return fmt.Errorf("eventlog: %s:%d: not an event: %w", l.path, line, err)
		}
		if l.last%indexEvery == 0 {
			l.index = append(l.index, off)
		}
		l.last++
		off += int64(len(b))
	}
}

// Append writes ev as one line and returns its sequence number, after an
// fsync under SyncAlways.
func (l *File) Append(_ context.Context, ev event.Event) (uint64, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return 0, err
	}
	l.scratch = append(ev.AppendJSON(l.scratch[:0]), '\n')
	if len(l.scratch) > maxLine {
		l.mu.Unlock()
		return 0, fmt.Errorf("eventlog: append: event of call %d is %d bytes encoded, more than the %d a line may hold", ev.CallID, len(l.scratch), maxLine)
	}
	n, err := l.f.Write(l.scratch)
	if err != nil {
		// A partial line may be on disk: refuse further appends, so the
		// torn line stays last and is truncated at the next open.
		l.err = fmt.Errorf("eventlog: append: %w (the log refuses appends until reopened)", err)
		err = l.err
		l.mu.Unlock()
		return 0, err
	}
	if l.last%indexEvery == 0 {
		l.index = append(l.index, l.size)
	}
	l.last++
	seq := l.last
	l.recent[(seq-1)%recentRecords] = Record{Seq: seq, Event: ev}
	if seq-l.recentFrom >= recentRecords {
		l.recentFrom = seq - recentRecords + 1
	}
	l.size += int64(n)
	l.mu.Unlock()

	if l.cfg.Sync == SyncAlways {
		if err := l.syncTo(seq); err != nil {
			return 0, err
		}
		return seq, nil
	}
	l.publish(seq)
	return seq, nil
}

// syncTo fsyncs until seq is durable; appends waiting together share one
// fsync.
func (l *File) syncTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= seq {
		return nil
	}
	l.mu.Lock()
	target, sticky := l.last, l.err
	l.mu.Unlock()
	if sticky != nil {
		// An earlier fsync or write failed and its append was refused: a
		// later fsync that happens to succeed must not publish that
		// record as committed.
		return sticky
	}
	if err := l.f.Sync(); err != nil {
		l.mu.Lock()
		if l.err == nil {
			l.err = fmt.Errorf("eventlog: fsync: %w (the log refuses appends until reopened)", err)
		}
		err = l.err
		l.mu.Unlock()
		return err
	}
	l.synced = target
	l.publish(target)
	return nil
}

// syncEvery fsyncs every interval until Close.
func (l *File) syncEvery(interval time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			last := l.last
			l.mu.Unlock()
			if err := l.syncTo(last); err != nil {
				l.cfg.Logger.Error("eventlog: periodic fsync failed", "path", l.path, "err", err)
			}
		}
	}
}

// publish makes records up to seq visible to Read and wakes Wait.
func (l *File) publish(seq uint64) { l.durable.Raise(seq) }

// LastSeq returns the last record readers may see.
func (l *File) LastSeq() uint64 { return l.durable.Load() }

// Wait blocks until a record with Seq > after is visible.
func (l *File) Wait(ctx context.Context, after uint64) error { return l.durable.Wait(ctx, after) }

// Read returns up to max records with Seq >= from that are visible.
func (l *File) Read(ctx context.Context, from uint64, max int) ([]Record, error) {
	if from == 0 {
		from = 1
	}
	last := l.LastSeq()
	if max <= 0 || from > last {
		return nil, nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if from >= l.recentFrom {
		// The tail: served from memory.
		n := min(uint64(max), last-from+1)
		out := make([]Record, 0, n)
		for seq := from; seq < from+n; seq++ {
			out = append(out, l.recent[(seq-1)%recentRecords])
		}
		l.mu.Unlock()
		return out, nil
	}
	slot := (from - 1) / indexEvery
	off := l.index[slot]
	l.mu.Unlock()

	r := bufio.NewReaderSize(io.NewSectionReader(l.f, off, 1<<62), 64<<10)
	seq := slot*indexEvery + 1
	var out []Record
	for seq <= last && len(out) < max {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		b, err := readLine(r)
		if err != nil {
			return out, fmt.Errorf("eventlog: %s: record %d: %w", l.path, seq, err)
		}
		if seq >= from {
			ev, err := event.Decode(b)
			if err != nil {
				return out, fmt.Errorf("eventlog: %s: record %d: %w", l.path, seq, err)
			}
			out = append(out, Record{Seq: seq, Event: ev})
		}
		seq++
	}
	return out, nil
}

// readLine reads one newline-terminated line, without the newline.
func readLine(r *bufio.Reader) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	if err == nil {
		return b[:len(b)-1], nil
	}
	var long []byte
	for errors.Is(err, bufio.ErrBufferFull) && len(long) <= maxLine {
		long = append(long, b...)
		b, err = r.ReadSlice('\n')
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return append(long, b[:len(b)-1]...), nil
}

// Err returns the error that made the log refuse appends (a failed write
// or fsync), or nil while it accepts them. Reopening the file is the way
// back: the torn or unsynced tail is then truncated or kept as the disk has
// it.
func (l *File) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Path returns the file's path.
func (l *File) Path() string { return l.path }

// Close fsyncs, stops the interval syncer and closes the file. It is
// idempotent.
func (l *File) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.durable.Close()
	close(l.stop)
	l.wg.Wait()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	err := l.f.Sync()
	if err == nil {
		// Appends waiting on a group commit are durable now: let them
		// return nil instead of syncing a closed file.
		l.mu.Lock()
		last, sticky := l.last, l.err
		l.mu.Unlock()
		if sticky == nil {
			l.synced = last
			l.publish(last)
		}
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	return nil
}

// AsEmitter returns an emitter that appends each event to log: the
// engine's Emitter in serve, so that a transition commits only once its
// event is in the log.
func AsEmitter(log Log) emitter.Emitter {
	return emitter.Func(func(ctx context.Context, ev event.Event) error {
		_, err := log.Append(ctx, ev)
		return err
	})
}
