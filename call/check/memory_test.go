package check

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check/checktest"
)

// repeated is a long log made of copies of a generated one, each copy's
// call_ids moved past the previous copy's, produced as it is read.
type repeated struct {
	lines  [][]byte
	ids    int64 // call_ids of a copy are below this
	copies int
	copy   int
	next   int
	buf    bytes.Buffer
}

func newRepeated(log string, calls, copies int) *repeated {
	r := &repeated{ids: int64(calls) + 1, copies: copies}
	for _, l := range strings.SplitAfter(log, "\n") {
		if l != "" {
			r.lines = append(r.lines, []byte(l))
		}
	}
	return r
}

func (r *repeated) Read(p []byte) (int, error) {
	for r.buf.Len() < len(p) && r.copy < r.copies {
		l := r.lines[r.next]
		i := bytes.Index(l, []byte(`"call_id":`)) + len(`"call_id":`)
		j := i + bytes.IndexByte(l[i:], ',')
		id, _ := strconv.ParseInt(string(l[i:j]), 10, 64)
		r.buf.Write(l[:i])
		r.buf.WriteString(strconv.FormatInt(id+int64(r.copy)*r.ids, 10))
		r.buf.Write(l[j:])
		if r.next++; r.next == len(r.lines) {
			r.next, r.copy = 0, r.copy+1
		}
	}
	if r.buf.Len() == 0 {
		return 0, io.EOF
	}
	return r.buf.Read(p)
}

// Memory follows live calls, not the log: over a long log of calls that
// end, the heap grows only by the ended calls' tombstones.
func TestMemoryStaysFlat(t *testing.T) {
	const calls, copies = 3000, 40
	log, st := engineLog(t, checktest.Config{Calls: calls, Concurrent: 300, Seed: 7})
	total := st.Events * copies
	var samples []uint64 // heap in use after a GC, by quarter of the log
	var ms runtime.MemStats
	c, err := New(Config{OnProgress: func(p Progress) {
		if p.Events*4 >= int64(total*(len(samples)+1)) {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			samples = append(samples, ms.HeapInuse)
		}
	}})
	require.NoError(t, err)
	c.bufSize = 256 << 10 // more batches, more samples
	rep, err := c.Check(context.Background(), Input{"log", newRepeated(log, calls, copies)})
	require.NoError(t, err)
	require.Equal(t, total, rep.Events)
	require.Equal(t, calls*copies, rep.Calls)
	require.Empty(t, rep.Findings)
	require.Len(t, samples, 4)

	bytesRead := int64(len(log)) * copies
	perEvent := float64(samples[3]-min(samples[0], samples[3])) / float64(total*3/4)
	t.Logf("%d events, %d MB read; heap in use by quarter: %v; growth %.1f B/event", total, bytesRead>>20, samples, perEvent)
	assert.Less(t, perEvent, 64.0, "tombstones only: a map entry and a hash per line")
	assert.Less(t, int64(samples[3]), bytesRead/8, "the heap is a fraction of the log")
}
