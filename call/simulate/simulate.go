// Package simulate produces realistic call-event logs by running the real
// call engine (package call) on virtual clocks: calls arrive at a rate,
// ring, are answered, talk and end as a mix of outcomes asks, and every
// event, a missed call's included, is emitted by the engine because an input
// came or a timer fired. Faults (redeliveries, reordering, dropped and
// illegal events) can be injected into the emitted stream, each with the
// findings the replay checker must report for it, written as a truth file.
//
// The output is JSON Lines of the seed's payloads ordered by (time, call_id,
// event), and the same bytes for the same Config on every run and machine:
// every random draw comes from a PCG generator seeded by Config.Seed (one
// stream per call), and only integer arithmetic turns draws into values.
//
// Calls are shared among workers, each with its own engine and virtual
// clock, and their events merged in order, so a run uses every core while
// memory follows live calls; the output does not depend on the number of
// workers.
package simulate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/callfsm/callfsm/fsm"
)

// Defaults for Config's zero values.
const (
	// DefaultRate is the arrival rate, in calls per second.
	DefaultRate = 50
	// DefaultStartUnix is when the first call arrives: the seed payload's
	// timestamp, 2026-02-23 07:37:53 UTC.
	DefaultStartUnix = 1771832273
	// FirstCallID is the first call's call_id; the others follow in
	// arrival order.
	FirstCallID = 28844
)

// Config configures a simulation. Calls is required; every other zero value
// means a default.
type Config struct {
	// Calls is how many calls arrive. Required, positive.
	Calls int
	// Seed seeds every random draw. The same Config gives the same bytes.
	Seed uint64
	// Start is when the first call arrives. Zero means
	// time.Unix(DefaultStartUnix, 0).
	Start time.Time
	// Rate is the mean arrival rate in calls per second; arrivals are a
	// Poisson process. Zero means DefaultRate.
	Rate float64
	// Mix is the outcomes' shares. Nil means DefaultMix().
	Mix Mix
	// Faults are the rates of the faults injected into the stream. Zero
	// injects none.
	Faults Faults
	// Spec is the lifecycle: the Popin outgoing lifecycle, with its
	// timeouts changed if wanted (fsm.Spec.WithTimeouts). Nil means
	// fsm.Outgoing(). An outcome of the mix that needs a switched-off
	// timeout (missed needs the ringing timeout) is an error.
	Spec *fsm.Spec
	// Workers is how many engines run at once. Zero means
	// runtime.GOMAXPROCS(0). The output does not depend on it.
	Workers int
}

// Simulator runs simulations of one Config. It is immutable: Run may be
// called any number of times, also concurrently, and gives the same output
// each time.
type Simulator struct {
	cfg      Config
	life     *lifecycle
	outcomes []outcome // in the spec's order of terminal states
	weights  int64     // sum of outcome weights
	faults   faultPlanner
	arrive   interarrivals
	last     int64 // the last arrival, nanoseconds after Start
}

// outcome is one terminal state with its share and its variants.
type outcome struct {
	state    fsm.State
	weight   int64 // in thousandths of the Mix's share
	variants []compiled
	total    int64 // sum of the variants' weights
}

// compiled is a variant checked against the spec, with what each step needs.
type compiled struct {
	weight int64
	steps  []compiledStep
}

type compiledStep struct {
	step
	from  int  // state index the step leaves
	to    int  // state index it enters
	dwell dist // for an input: how long the call stays first (ms)
}

// New checks cfg and returns a Simulator. Errors wrap ErrInvalidConfig and
// say which field is wrong.
func New(cfg Config) (*Simulator, error) {
	switch {
	case cfg.Calls <= 0:
		return nil, invalidf("calls: %d, want at least 1", cfg.Calls)
	case math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate < 0:
		return nil, invalidf("rate: %v, want a positive number of calls per second", cfg.Rate)
	case cfg.Workers < 0:
		return nil, invalidf("workers: %d, want 0 (one per CPU) or more", cfg.Workers)
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Unix(DefaultStartUnix, 0)
	}
	if cfg.Mix == nil {
		cfg.Mix = DefaultMix()
	}
	if cfg.Spec == nil {
		cfg.Spec = fsm.Outgoing()
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	meanNs := 1e9 / cfg.Rate // one IEEE division: the same everywhere
	if meanNs < 1 {
		return nil, invalidf("rate: %v calls per second is more than one a nanosecond", cfg.Rate)
	}

	s := &Simulator{cfg: cfg, life: newLifecycle(cfg.Spec), arrive: newInterarrivals(int64(meanNs))}
	if err := s.compileMix(); err != nil {
		return nil, err
	}
	s.faults = faultPlanner{l: s.life, ppb: cfg.Faults.ppb()}
	for _, r := range s.faults.ppb {
		s.faults.any = s.faults.any || r > 0
	}
	rng := rand.New(arrivalSource(cfg.Seed))
	for range cfg.Calls - 1 {
		s.last += s.arrive.draw(rng)
	}
	s.faults.last = cfg.Start.Add(time.Duration(s.last)).Unix()
	return s, nil
}

// compileMix checks the mix against the spec and builds the outcomes.
func (s *Simulator) compileMix() error {
	spec := s.cfg.Spec
	terminal := spec.TerminalStates()
	for st, w := range s.cfg.Mix {
		if !spec.Terminal(st) {
			names := make([]string, len(terminal))
			for i, t := range terminal {
				names[i] = string(t)
			}
			return invalidf("mix: unknown outcome %q (want one of %s)", st, strings.Join(names, ", "))
		}
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return invalidf("mix: %s=%v: want a share of 0 or more", st, w)
		}
	}
	index := make(map[fsm.State]int)
	for i, st := range s.life.states {
		index[st] = i
	}
	for _, st := range terminal {
		o := outcome{state: st, weight: int64(math.Round(s.cfg.Mix[st] * 1000))}
		var unusable []string
		for _, v := range variants {
			if v.outcome != st {
				continue
			}
			c, err := compileVariant(spec, index, v)
			if err != nil {
				unusable = append(unusable, err.Error())
				continue
			}
			o.variants = append(o.variants, c)
			o.total += c.weight
		}
		if o.weight > 0 && len(o.variants) == 0 {
			if len(unusable) == 0 {
				return invalidf("mix: outcome %q: the simulator has no way to reach it", st)
			}
			return invalidf("mix: outcome %q cannot happen in this lifecycle: %s", st, strings.Join(unusable, "; "))
		}
		s.outcomes = append(s.outcomes, o)
		s.weights += o.weight
	}
	if s.weights <= 0 {
		return invalidf("mix: every share is 0")
	}
	return nil
}

// compileVariant walks the variant through the spec.
func compileVariant(spec *fsm.Spec, index map[fsm.State]int, v variant) (compiled, error) {
	c := compiled{weight: v.weight}
	st := spec.Initial()
	for _, stp := range v.steps {
		to, ok := spec.Next(st, stp.trigger)
		if !ok {
			return c, fmt.Errorf("the spec has no %s from %s", stp.trigger, st)
		}
		cs := compiledStep{step: stp, from: index[st], to: index[to]}
		if stp.trigger == fsm.Timeout {
			if _, _, on := spec.Timeout(st); !on {
				return c, fmt.Errorf("the %s timeout is switched off", st)
			}
		} else {
			cs.dwell = dwell[st][stp.trigger]
			if cs.dwell == nil {
				cs.dwell = uniform(1_000, 10_000)
			}
		}
		c.steps = append(c.steps, cs)
		st = to
	}
	if st != v.outcome || !spec.Terminal(st) {
		return c, fmt.Errorf("the path ends in %s, not %s", st, v.outcome)
	}
	return c, nil
}

// Summary tells what a run produced.
type Summary struct {
	// Calls is how many calls were simulated.
	Calls int
	// Events is how many events the engines emitted.
	Events int64
	// Lines is how many lines were written: events, less those dropped,
	// plus those added by faults.
	Lines int64
	// Outcomes counts the calls by the terminal state the engine reached.
	Outcomes map[fsm.State]int
	// Faults counts the faults injected, by kind.
	Faults map[Fault]int
	// Findings is how many truth records were written: the findings the
	// checker must report.
	Findings int64
	// First and Last are the timestamps of the first and last lines.
	First, Last time.Time
}

// Run simulates the calls and writes their events to out as JSON Lines
// and, if truth is not nil, one TruthRecord per finding the injected faults
// must yield, as JSON Lines in the order of their lines. It returns when
// every call has ended and everything is written, or at the first error
// (ctx's included); it does not close out or truth.
func (s *Simulator) Run(ctx context.Context, out, truth io.Writer) (*Summary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	k := min(s.cfg.Workers, s.cfg.Calls)
	workers := make([]*worker, k)
	for i := range workers {
		workers[i] = newWorker(s, i, k)
	}
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i, w := range workers {
		wg.Go(func() { errs[i] = w.run(ctx) })
	}

	bw := bufio.NewWriterSize(out, 1<<20)
	var tw *bufio.Writer
	if truth != nil {
		tw = bufio.NewWriterSize(truth, 64<<10)
	}
	m := merger{s: s, w: bw, truth: tw}
	mergeErr := m.merge(ctx, workers)
	if mergeErr != nil {
		cancel() // workers waiting to hand over a chunk give up
	}
	wg.Wait()

	if err := errors.Join(errs...); err != nil && (mergeErr == nil || !errors.Is(err, context.Canceled)) {
		return nil, err
	}
	if mergeErr != nil {
		return nil, mergeErr
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("simulate: write: %w", err)
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return nil, fmt.Errorf("simulate: write truth: %w", err)
		}
	}

	sum := &Summary{Calls: s.cfg.Calls, Lines: m.lines, Findings: m.findings,
		Outcomes: map[fsm.State]int{}, Faults: map[Fault]int{}}
	if m.lines > 0 {
		sum.First, sum.Last = time.Unix(m.first, 0), time.Unix(m.latest, 0)
	}
	for _, w := range workers {
		sum.Events += w.events
		for i, n := range w.outcomes {
			if n > 0 {
				sum.Outcomes[s.life.states[i]] += n
			}
		}
		for i, n := range w.faults {
			if n > 0 {
				sum.Faults[faultKinds[i]] += n
			}
		}
	}
	return sum, nil
}

// String writes the summary on one line, outcomes in the lifecycle's order.
func (sum *Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls, %d events, %d lines", sum.Calls, sum.Events, sum.Lines)
	outcomes := make([]string, 0, len(sum.Outcomes))
	for st := range sum.Outcomes {
		outcomes = append(outcomes, string(st))
	}
	slices.Sort(outcomes)
	for _, st := range outcomes {
		fmt.Fprintf(&b, ", %s %d", st, sum.Outcomes[fsm.State(st)])
	}
	for _, k := range faultKinds {
		if n := sum.Faults[k]; n > 0 {
			fmt.Fprintf(&b, ", %s faults %d", k, n)
		}
	}
	if sum.Findings > 0 {
		fmt.Fprintf(&b, ", %d findings expected", sum.Findings)
	}
	return b.String()
}

// Streams of random numbers, all from the seed.

const (
	arrivalStream = 0x6172726976616c73 // "arrivals"
	callStream    = 0x63616c6c73747265 // "callstre"
	faultStream   = 0x6661756c7473     // "faults"
)

func arrivalSource(seed uint64) *rand.PCG { return rand.NewPCG(seed, arrivalStream) }

// seedCall reseeds src with call i's own stream, and faults with the
// stream its fault is drawn from: a call is the same with or without
// faults asked for.
func seedCall(src, faults *rand.PCG, seed uint64, i int64) {
	src.Seed(seed, splitmix(callStream^uint64(i)))
	faults.Seed(seed, splitmix(faultStream^uint64(i)))
}

// splitmix is SplitMix64's finalizer: it spreads consecutive call indexes
// over unrelated PCG streams.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
