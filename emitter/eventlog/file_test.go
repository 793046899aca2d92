package eventlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter/eventlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ev(callID int64, state string, ts int64) event.Event {
	return event.Event{Event: "popin_outgoing_call_" + state, SessionID: "s", UserID: 1, CallID: callID, Timestamp: ts}
}

func open(t *testing.T, path string, policy eventlog.SyncPolicy) *eventlog.File {
	t.Helper()
	l, err := eventlog.OpenFile(path, eventlog.FileConfig{Sync: policy, Interval: time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestAppendReadReopen(t *testing.T) {
	for _, policy := range []eventlog.SyncPolicy{eventlog.SyncAlways, eventlog.SyncInterval, eventlog.SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "events.jsonl")
			l := open(t, path, policy)
			const n = 1000 // several index slots
			for i := 1; i <= n; i++ {
				seq, err := l.Append(ctx, ev(int64(i%7+1), "ringing", int64(i)))
				require.NoError(t, err)
				require.Equal(t, uint64(i), seq)
			}
			require.NoError(t, l.Wait(ctx, n-1))
			assert.Equal(t, uint64(n), l.LastSeq())
			for _, from := range []uint64{0, 1, 255, 256, 257, 513, 999, 1000} {
				recs, err := l.Read(ctx, from, 3)
				require.NoError(t, err)
				want := min(3, n-max(from, 1)+1)
				require.Len(t, recs, int(want), "from %d", from)
				assert.Equal(t, max(from, 1), recs[0].Seq)
				assert.Equal(t, int64(recs[0].Seq), recs[0].Event.Timestamp)
			}
			recs, err := l.Read(ctx, n+1, 10)
			require.NoError(t, err)
			assert.Empty(t, recs)
			require.NoError(t, l.Close())
			require.NoError(t, l.Close(), "Close is idempotent")
			_, err = l.Append(ctx, ev(1, "ringing", 1))
			assert.ErrorIs(t, err, eventlog.ErrClosed)

			// The file is JSON Lines of seed payloads, one per record.
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			require.Len(t, lines, n)
			first := ev(2, "ringing", 1)
			assert.Equal(t, string(first.AppendJSON(nil)), lines[0])

			// Reopened, the log goes on from where it was.
			l2 := open(t, path, policy)
			assert.Equal(t, uint64(n), l2.LastSeq())
			seq, err := l2.Append(ctx, ev(9, "busy", 5000))
			require.NoError(t, err)
			assert.Equal(t, uint64(n+1), seq)
			recs, err = l2.Read(ctx, n, 5)
			require.NoError(t, err)
			require.Len(t, recs, 2)
			assert.Equal(t, int64(9), recs[1].Event.CallID)
		})
	}
}

// A crash in the middle of an append leaves a line without its newline: it
// is truncated at open, and the log goes on.
func TestTornLastLineIsTruncated(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, path, eventlog.SyncAlways)
	for i := 1; i <= 3; i++ {
		_, err := l.Append(ctx, ev(1, "ringing", int64(i)))
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	whole, err := os.ReadFile(path)
	require.NoError(t, err)
	missed := ev(1, "missed", 4)
	torn := missed.AppendJSON(nil)
	require.NoError(t, os.WriteFile(path, append(whole, torn[:len(torn)/2]...), 0o644))

	l2 := open(t, path, eventlog.SyncAlways)
	assert.Equal(t, uint64(3), l2.LastSeq())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, whole, after, "the torn bytes are gone, the rest untouched")
	seq, err := l2.Append(ctx, ev(1, "missed", 4))
	require.NoError(t, err)
	assert.Equal(t, uint64(4), seq)
}

func TestCorruptLineIsAnErrorNamingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	first := ev(1, "initiated", 1)
	good := string(first.AppendJSON(nil))
	require.NoError(t, os.WriteFile(path, []byte(good+"\n{\"event\":42}\n"+good+"\n"), 0o644))
	_, err := eventlog.OpenFile(path, eventlog.FileConfig{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "events.jsonl:2: not an event")
	data, _ := os.ReadFile(path)
	assert.Equal(t, 3, strings.Count(string(data), "\n"), "nothing is truncated or rewritten")
}

func TestParseSyncPolicy(t *testing.T) {
	for _, s := range []string{"always", "interval", "never"} {
		p, err := eventlog.ParseSyncPolicy(s)
		require.NoError(t, err)
		assert.Equal(t, s, p.String())
	}
	_, err := eventlog.ParseSyncPolicy("sometimes")
	assert.EqualError(t, err, `eventlog: unknown sync policy "sometimes" (want always, interval or never)`)
}

func TestAsEmitter(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "e.jsonl"), eventlog.SyncNever)
	em := eventlog.AsEmitter(l)
	require.NoError(t, em.Emit(context.Background(), ev(3, "busy", 9)))
	assert.Equal(t, uint64(1), l.LastSeq())
	require.NoError(t, l.Close())
	assert.ErrorIs(t, em.Emit(context.Background(), ev(3, "busy", 9)), eventlog.ErrClosed)
}

func ExampleFile() {
	dir, _ := os.MkdirTemp("", "eventlog")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, _ := eventlog.OpenFile(filepath.Join(dir, "events.jsonl"), eventlog.FileConfig{Sync: eventlog.SyncAlways})
	defer l.Close()
	_, _ = l.Append(ctx, ev(28844, "initiated", 1771832273))
	_, _ = l.Append(ctx, ev(28844, "ringing", 1771832275))
	recs, _ := l.Read(ctx, 1, 10)
	for _, r := range recs {
		fmt.Println(r.Seq, r.Event.Event)
	}
	// Output:
	// 1 popin_outgoing_call_initiated
	// 2 popin_outgoing_call_ringing
}

// A record longer than the reader's 64 KiB buffer survives a reopen (the
// HTTP API accepts bodies up to 64 KiB, so such events exist).
func TestLongRecordReopens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, path, eventlog.SyncAlways)
	long := ev(1, "initiated", 1)
	long.Agent.Name = strings.Repeat("a", 200<<10)
	_, err := l.Append(ctx, long)
	require.NoError(t, err)
	_, err = l.Append(ctx, ev(1, "ringing", 2))
	require.NoError(t, err)
	require.NoError(t, l.Close())

	l2 := open(t, path, eventlog.SyncAlways)
	assert.Equal(t, uint64(2), l2.LastSeq())
	recs, err := l2.Read(ctx, 1, 2)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	assert.Equal(t, long.Agent.Name, recs[0].Event.Agent.Name)

	huge := ev(2, "initiated", 3)
	huge.Agent.Name = strings.Repeat("b", 2<<20)
	_, err = l2.Append(ctx, huge)
	assert.ErrorContains(t, err, "more than the 1048576 a line may hold")
	assert.Equal(t, uint64(2), l2.LastSeq(), "a refused record is not written")
}

// Reads of the tail come from memory, older ones from disk; both give the
// same records, across the boundary between them.
func TestReadMemoryAndDiskAgree(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, path, eventlog.SyncNever)
	const n = 5000 // more than the records kept in memory
	for i := 1; i <= n; i++ {
		_, err := l.Append(ctx, ev(int64(i%13+1), "ringing", int64(i)))
		require.NoError(t, err)
	}
	disk := open(t, path, eventlog.SyncNever) // a reopened log reads only from disk
	for _, from := range []uint64{1, 903, 904, 905, 2000, 4999, 5000} {
		got, err := l.Read(ctx, from, 10)
		require.NoError(t, err)
		want, err := disk.Read(ctx, from, 10)
		require.NoError(t, err)
		require.Equal(t, want, got, "from %d", from)
		require.Equal(t, from, got[0].Seq)
	}
}

func TestLogFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, path, eventlog.SyncNever)
	require.NoError(t, l.Err())
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "payloads hold personal data")
}
