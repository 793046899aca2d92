package check

import (
	"maps"
	"slices"
)

// denseSeconds is how many whole seconds hist counts in an array; longer
// times go to a map.
const denseSeconds = 3600

// hist counts durations in whole seconds, exactly.
type hist struct {
	n      int
	dense  []uint32 // made on first use
	sparse map[int64]int
}

func (h *hist) add(sec int64) {
	h.n++
	if sec < denseSeconds {
		if h.dense == nil {
			h.dense = make([]uint32, denseSeconds)
		}
		h.dense[sec]++
		return
	}
	if h.sparse == nil {
		h.sparse = make(map[int64]int)
	}
	h.sparse[sec]++
}

// summary gives nearest-rank percentiles: the pth is the smallest value
// with at least p% of the counts at or below it.
func (h *hist) summary() Durations {
	d := Durations{Calls: h.n}
	ranks := []struct {
		rank int
		out  *int64
	}{{rankOf(50, h.n), &d.P50}, {rankOf(90, h.n), &d.P90}, {rankOf(99, h.n), &d.P99}, {h.n, &d.Max}}
	seen, k := 0, 0
	visit := func(v int64, c int) {
		seen += c
		for k < len(ranks) && seen >= ranks[k].rank {
			*ranks[k].out = v
			k++
		}
	}
	for v, c := range h.dense {
		if c > 0 {
			visit(int64(v), int(c))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(h.sparse)) {
		visit(v, h.sparse[v])
	}
	return d
}

// rankOf is the nearest rank of percentile p among n values: ceil(p*n/100).
func rankOf(p, n int) int { return max(1, (p*n+99)/100) }
