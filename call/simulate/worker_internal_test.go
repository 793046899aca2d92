package simulate

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Lines of one instant are put in (call_id, line) order before they leave
// the worker, whatever order the clock fired their timers in: a timer armed
// earlier fires first among those due at the same instant, and that need
// not be the lower call_id.
func TestEndBatchOrdersAnInstant(t *testing.T) {
	s, err := New(Config{Calls: 1})
	require.NoError(t, err)
	w := newWorker(s, 0, 1)
	w.ctx = context.Background()
	add := func(at, id int64, ord int16) {
		if at != w.batchAt {
			w.endBatch(false)
			w.batchAt = at
		}
		w.entry(at, id, 0, ord, 0, 0, rules{}, 0)
	}
	add(1, 9, 0)
	add(2, 7, 2)
	add(2, 5, 1)
	add(2, 7, 1)
	add(2, 5, 0)
	add(3, 1, 0)
	w.endBatch(false)
	var got [][3]int64
	for _, e := range w.cur.ents {
		got = append(got, [3]int64{e.at, e.id, int64(e.ord)})
	}
	assert.Equal(t, [][3]int64{{1, 9, 0}, {2, 5, 0}, {2, 5, 1}, {2, 7, 1}, {2, 7, 2}, {3, 1, 0}}, got)
}

// The exponential distribution's knots are -ln(1-p), to the millionth, and
// its mean (which interarrivals divide by) is close to one.
func TestExpUnitKnots(t *testing.T) {
	for _, k := range expUnit[:len(expUnit)-1] {
		want := -math.Log(1-float64(k.p)/million) * million
		assert.InDelta(t, want, float64(k.v), 1, "p=%d", k.p)
	}
	assert.InEpsilon(t, million, float64(expUnit.mean())/million, 0.015)
}
