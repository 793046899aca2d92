package simulate

import (
	"math/bits"
	"math/rand/v2"
)

// dist is a distribution given by its inverse CDF at a few knots, drawn by
// linear interpolation between them. Everything is integer arithmetic on
// integer random draws, so a draw is the same on every machine: floating
// point may be fused differently by different compilers and CPUs.
type dist []knot

// knot: with probability p (in millionths) a draw is at most v.
type knot struct {
	p int64 // cumulative probability, 0 … 1e6
	v int64 // value, in the distribution's unit
}

const million = 1_000_000

// draw returns a value from the distribution.
func (d dist) draw(rng *rand.Rand) int64 {
	u := rng.Int64N(million)
	for k := 1; k < len(d); k++ {
		if u < d[k].p {
			a, b := d[k-1], d[k]
			return a.v + (b.v-a.v)*(u-a.p)/(b.p-a.p)
		}
	}
	return d[len(d)-1].v
}

// mean returns the distribution's mean, the integral of its inverse CDF,
// times 1e6 (exact in integers).
func (d dist) mean() int64 {
	var sum int64
	for k := 1; k < len(d); k++ {
		sum += (d[k].p - d[k-1].p) * (d[k-1].v + d[k].v) / 2
	}
	return sum
}

// uniform returns the uniform distribution on [lo, hi].
func uniform(lo, hi int64) dist { return dist{{0, lo}, {million, hi}} }

// expUnit is the standard exponential distribution (mean 1) in millionths:
// -ln(1-p) at its knots, truncated at p = 0.9999. Linear interpolation
// makes its mean, by mean(), 1.2% more than one million; interarrival draws
// are scaled by that exact mean, so arrivals keep the asked rate.
// TestExpUnitKnots checks the values against math.Log.
var expUnit = dist{
	{0, 0}, {62500, 64539}, {125000, 133531}, {187500, 207639}, {250000, 287682},
	{312500, 374693}, {375000, 470004}, {437500, 575364}, {500000, 693147},
	{562500, 826679}, {625000, 980829}, {687500, 1163151}, {750000, 1386294},
	{812500, 1673976}, {875000, 2079442}, {937500, 2772589}, {970000, 3506558},
	{990000, 4605170}, {999000, 6907755}, {999900, 9210340}, {million, 9210340},
}

// interarrivals draws the times between arrivals, exponential (a Poisson
// process) with the given mean in nanoseconds.
type interarrivals struct {
	meanNs   uint64
	unitMean uint64 // expUnit's mean, in its unit (millionths)
}

func newInterarrivals(meanNs int64) interarrivals {
	return interarrivals{meanNs: uint64(meanNs), unitMean: uint64(expUnit.mean() / million)}
}

func (ia interarrivals) draw(rng *rand.Rand) int64 {
	x := uint64(expUnit.draw(rng)) // < 1e7
	hi, lo := bits.Mul64(x, ia.meanNs)
	if hi >= ia.unitMean { // beyond any clock: cannot happen for a positive rate
		return 1<<63 - 1
	}
	q, _ := bits.Div64(hi, lo, ia.unitMean)
	return int64(min(q, 1<<62))
}
