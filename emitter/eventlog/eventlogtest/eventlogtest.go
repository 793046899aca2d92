// Package eventlogtest checks that an eventlog.Log obeys the contract, in
// the manner of testing/slogtest: every Log callfsm ships (the file, the
// in-memory one, and a JetStream stream) passes Run, and so can a user's.
package eventlogtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

// Run checks the logs made by newLog, one fresh empty log per subtest. Run
// closes each log it makes.
func Run(t *testing.T, newLog func(t *testing.T) eventlog.Log) {
	t.Helper()
	for _, c := range []struct {
		name  string
		check func(*testing.T, eventlog.Log)
	}{
		{"SequenceAndRead", checkSequenceAndRead},
		{"WaitWakes", checkWaitWakes},
		{"ConcurrentAppends", checkConcurrentAppends},
		{"Close", checkClose},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLog(t)
			defer l.Close()
			c.check(t, l)
		})
	}
}

// Event returns a small valid event for call id, entering state, at ts.
func Event(id int64, state string, ts int64) event.Event {
	return event.Event{Event: "popin_outgoing_call_" + state, SessionID: "s", UserID: 1, CallID: id, Timestamp: ts}
}

func mustAppend(t *testing.T, l eventlog.Log, ev event.Event) uint64 {
	t.Helper()
	seq, err := l.Append(context.Background(), ev)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func checkSequenceAndRead(t *testing.T, l eventlog.Log) {
	ctx := context.Background()
	if got := l.LastSeq(); got != 0 {
		t.Fatalf("LastSeq of an empty log = %d, want 0", got)
	}
	if recs, err := l.Read(ctx, 1, 10); err != nil || len(recs) != 0 {
		t.Fatalf("Read of an empty log = %v, %v; want nothing", recs, err)
	}
	const n = 600
	for i := 1; i <= n; i++ {
		if seq := mustAppend(t, l, Event(int64(i%5+1), "ringing", int64(i))); seq != uint64(i) {
			t.Fatalf("Append #%d returned seq %d", i, seq)
		}
	}
	if err := l.Wait(ctx, n-1); err != nil {
		t.Fatalf("Wait(%d): %v", n-1, err)
	}
	if got := l.LastSeq(); got != n {
		t.Fatalf("LastSeq = %d, want %d", got, n)
	}
	for _, from := range []uint64{1, 2, 255, 256, 257, 599, 600} {
		recs, err := l.Read(ctx, from, 3)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		want := min(3, n-from+1)
		if uint64(len(recs)) != want {
			t.Fatalf("Read(%d, 3) gave %d records, want %d", from, len(recs), want)
		}
		for i, r := range recs {
			if r.Seq != from+uint64(i) || r.Event.Timestamp != int64(r.Seq) {
				t.Fatalf("Read(%d)[%d] = seq %d ts %d, want seq and ts %d", from, i, r.Seq, r.Event.Timestamp, from+uint64(i))
			}
		}
	}
	if recs, err := l.Read(ctx, n+1, 10); err != nil || len(recs) != 0 {
		t.Fatalf("Read past the end = %v, %v; want nothing", recs, err)
	}
}

func checkWaitWakes(t *testing.T, l eventlog.Log) {
	ctx := context.Background()
	woke := make(chan error, 1)
	go func() { woke <- l.Wait(ctx, 0) }()
	mustAppend(t, l, Event(1, "initiated", 1))
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(10 * time.Second): // a bound on a hang
		t.Fatal("Wait did not wake on Append")
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- l.Wait(cctx, 1) }()
	cancel()
	if err := <-woke; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
}

func checkConcurrentAppends(t *testing.T, l eventlog.Log) {
	var wg sync.WaitGroup
	seqs := make([][]uint64, 8)
	for g := range seqs {
		wg.Go(func() {
			for i := range 40 {
				seq, err := l.Append(context.Background(), Event(int64(g+1), "ringing", int64(i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs[g] = append(seqs[g], seq)
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, ss := range seqs {
		for i, s := range ss {
			if seen[s] {
				t.Fatalf("seq %d given twice", s)
			}
			seen[s] = true
			if i > 0 && s <= ss[i-1] {
				t.Fatalf("one goroutine's appends got seqs %d then %d", ss[i-1], s)
			}
		}
	}
	if len(seen) != 320 || l.LastSeq() != 320 {
		t.Fatalf("%d distinct seqs, LastSeq %d; want 320", len(seen), l.LastSeq())
	}
}

func checkClose(t *testing.T, l eventlog.Log) {
	ctx := context.Background()
	mustAppend(t, l, Event(1, "initiated", 1))
	woke := make(chan error, 1)
	go func() { woke <- l.Wait(ctx, 1) }()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-woke; !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Wait across Close = %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(ctx, Event(1, "ringing", 2)); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

// Follow reads l from its first record, waiting for more with Wait, until
// done holds for the records read so far, and returns them; it fails the
// test after 30 s. For tests that wait on something a log shows (another
// node's appends, a timeout firing) without sleeping.
func Follow(t testing.TB, l eventlog.Log, done func([]eventlog.Record) bool) []eventlog.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []eventlog.Record
	for {
		more, err := l.Read(ctx, uint64(len(recs))+1, 4096)
		if err != nil {
			t.Fatalf("eventlogtest: Follow: %v", err)
		}
		recs = append(recs, more...)
		if done(recs) {
			return recs
		}
		if err := l.Wait(ctx, uint64(len(recs))); err != nil {
			t.Fatalf("eventlogtest: the log did not reach the expected state: %v (%d records)", err, len(recs))
		}
	}
}
