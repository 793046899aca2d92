package simulate_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/calltest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/simulate"
	"github.com/callfsm/callfsm/fsm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run simulates cfg and returns the log, the truth file and the summary.
func run(t testing.TB, cfg simulate.Config) ([]byte, []byte, *simulate.Summary) {
	t.Helper()
	s, err := simulate.New(cfg)
	require.NoError(t, err)
	var out, truth bytes.Buffer
	sum, err := s.Run(context.Background(), &out, &truth)
	require.NoError(t, err)
	return out.Bytes(), truth.Bytes(), sum
}

func decodeAll(t testing.TB, log []byte) []event.Event {
	t.Helper()
	var out []event.Event
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		ev, err := event.Decode(sc.Bytes())
		require.NoError(t, err, sc.Text())
		out = append(out, ev)
	}
	require.NoError(t, sc.Err())
	return out
}

var allFaults = simulate.Faults{Duplicate: 0.03, Reorder: 0.03, Drop: 0.03, Illegal: 0.03}

// With no faults, the log is legal: every call starts in initiated, moves
// only along the lifecycle, in time, and ends; the oracle finds nothing.
func TestNoFaultsIsLegal(t *testing.T) {
	spec := fsm.Outgoing()
	log, truth, sum := run(t, simulate.Config{Calls: 2000, Seed: 7})
	assert.Empty(t, truth)
	p, err := parse(log)
	require.NoError(t, err)
	findings, calls, err := oracle(spec, p, reading{})
	require.NoError(t, err)
	assert.Empty(t, findings)
	assert.Equal(t, 2000, calls)
	evs := p.evs
	for i, ev := range evs {
		require.Equal(t, p.raw[i], string(ev.AppendJSON(nil)), "line %d is not the engine's encoding", i+1)
	}
	assert.Equal(t, sum.Events, int64(len(evs)))
	assert.Equal(t, sum.Lines, int64(len(evs)))
	ended := 0
	for _, n := range sum.Outcomes {
		ended += n
	}
	assert.Equal(t, 2000, ended)
	assert.Empty(t, sum.Faults)
}

// The output is ordered by timestamp, and every call's events by the
// lifecycle.
func TestOrderedByTimestamp(t *testing.T) {
	log, _, _ := run(t, simulate.Config{Calls: 2000, Seed: 3, Rate: 200})
	evs := decodeAll(t, log)
	for i := 1; i < len(evs); i++ {
		require.LessOrEqual(t, evs[i-1].Timestamp, evs[i].Timestamp, "line %d", i+1)
	}
	assert.Equal(t, int64(simulate.DefaultStartUnix), evs[0].Timestamp)
	assert.Equal(t, int64(simulate.FirstCallID), evs[0].CallID)
}

// The same Config gives the same bytes, whatever the number of workers;
// another seed gives another log.
func TestDeterministic(t *testing.T) {
	cfg := simulate.Config{Calls: 1500, Seed: 42, Faults: allFaults, Rate: 500}
	cfg.Workers = 1
	want, wantTruth, _ := run(t, cfg)
	require.NotEmpty(t, wantTruth)
	for _, workers := range []int{1, 2, 3, 7} {
		cfg.Workers = workers
		got, gotTruth, _ := run(t, cfg)
		require.True(t, bytes.Equal(want, got), "workers=%d: log differs", workers)
		require.True(t, bytes.Equal(wantTruth, gotTruth), "workers=%d: truth differs", workers)
	}
	cfg.Seed = 43
	other, _, _ := run(t, cfg)
	assert.False(t, bytes.Equal(want, other))
}

// At absurd rates many events fall on the same nanosecond, in one worker or
// across workers; their order is still (call_id, event), whatever the
// workers.
func TestDeterministicWhenEventsCoincide(t *testing.T) {
	cfg := simulate.Config{Calls: 3000, Seed: 5, Rate: 1e9, Workers: 1}
	want, _, _ := run(t, cfg)
	for _, workers := range []int{2, 3} {
		cfg.Workers = workers
		got, _, _ := run(t, cfg)
		require.True(t, bytes.Equal(want, got), "workers=%d: log differs", workers)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with a file of testdata/, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "run go test ./call/simulate -update to accept")
}

// Golden files pin the bytes across machines and Go releases: the
// simulator uses only integer arithmetic on PCG draws.
func TestGolden(t *testing.T) {
	log, truth, _ := run(t, simulate.Config{Calls: 12, Seed: 1, Faults: simulate.Faults{Duplicate: 0.04, Reorder: 0.04, Drop: 0.04, Illegal: 0.04}})
	golden(t, "seed1.jsonl", log)
	golden(t, "seed1.truth.jsonl", truth)
}

// Faults change only the calls they hit: every other call's lines are those
// of the run without faults.
func TestFaultsTouchOnlyTheirCalls(t *testing.T) {
	cfg := simulate.Config{Calls: 800, Seed: 4}
	clean, _, _ := run(t, cfg)
	cfg.Faults = allFaults
	faulty, truthFile, sum := run(t, cfg)
	recs, err := simulate.ReadTruth(bytes.NewReader(truthFile))
	require.NoError(t, err)
	hit := map[int64]bool{}
	for _, r := range recs {
		hit[r.CallID] = true
	}
	injected := 0
	for _, n := range sum.Faults {
		injected += n
	}
	assert.Len(t, hit, injected, "every injected fault yields findings")
	byCall := func(log []byte) map[int64][]string {
		out := map[int64][]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
			ev, err := event.Decode([]byte(line))
			require.NoError(t, err)
			out[ev.CallID] = append(out[ev.CallID], line)
		}
		return out
	}
	a, b := byCall(clean), byCall(faulty)
	require.Len(t, b, 800)
	for id, lines := range a {
		if !hit[id] {
			assert.Equal(t, lines, b[id], "call %d", id)
		} else {
			assert.NotEqual(t, lines, b[id], "call %d", id)
		}
	}
}

// The truth file is exactly what a checker following the rule table
// reports, under every reading of it, for many seeds.
func TestTruthMatchesTheRules(t *testing.T) {
	spec := fsm.Outgoing()
	byRule := map[simulate.Fault]map[simulate.Rule]int{}
	for seed := uint64(1); seed <= 4; seed++ {
		log, truthFile, sum := run(t, simulate.Config{Calls: 1500, Seed: seed, Faults: allFaults, Rate: 10})
		recs, err := simulate.ReadTruth(bytes.NewReader(truthFile))
		require.NoError(t, err)
		assert.Equal(t, sum.Findings, int64(len(recs)))
		want := truthFindings(recs)
		p, err := parse(log)
		require.NoError(t, err)
		for _, rd := range readings() {
			got, calls, err := oracle(spec, p, rd)
			require.NoError(t, err)
			assert.Equal(t, 1500, calls)
			require.Equal(t, want, got, "seed %d, reading %+v", seed, rd)
		}
		lines := bytes.Split(log, []byte("\n"))
		for _, r := range recs {
			ev, err := event.Decode(lines[r.Line-1])
			require.NoError(t, err)
			assert.Equal(t, r.Event, ev.Event, "line %d", r.Line)
			assert.Equal(t, r.CallID, ev.CallID, "line %d", r.Line)
			if byRule[r.Fault] == nil {
				byRule[r.Fault] = map[simulate.Rule]int{}
			}
			byRule[r.Fault][r.Rule]++
		}
	}
	// Every fault kind showed every finding it can cause.
	for fault, rules := range map[simulate.Fault][]simulate.Rule{
		simulate.FaultDuplicate: {simulate.RuleDuplicate},
		simulate.FaultReorder:   {simulate.RuleIllegalTransition, simulate.RuleTimeBackwards},
		simulate.FaultDrop:      {simulate.RuleNoInitiated, simulate.RuleIllegalTransition, simulate.RuleOverdue, simulate.RuleIncomplete},
		simulate.FaultIllegal:   {simulate.RuleIllegalTransition},
	} {
		for _, r := range rules {
			assert.Positive(t, byRule[fault][r], "no %s finding from a %s fault", r, fault)
		}
	}
}

// Near the end of the log, a call whose last event is dropped may not be
// overdue yet: the simulator drops no last event there whose finding it
// could not tell. Many drops, and a slow rate, put many calls near the end.
func TestDropsNearTheEndOfTheLog(t *testing.T) {
	spec := fsm.Outgoing()
	mix := simulate.Mix{fsm.Missed: 1, fsm.Busy: 1, fsm.Declined: 1}
	for seed := uint64(1); seed <= 5; seed++ {
		log, truthFile, sum := run(t, simulate.Config{Calls: 60, Seed: seed, Rate: 0.5, Mix: mix, Faults: simulate.Faults{Drop: 0.5}})
		require.Positive(t, sum.Faults[simulate.FaultDrop])
		recs, err := simulate.ReadTruth(bytes.NewReader(truthFile))
		require.NoError(t, err)
		p, err := parse(log)
		require.NoError(t, err)
		for _, rd := range readings() {
			got, _, err := oracle(spec, p, rd)
			require.NoError(t, err)
			require.Equal(t, truthFindings(recs), got, "seed %d, reading %+v", seed, rd)
		}
	}
}

// Faults come at about the asked rates: each is drawn for a share of events,
// and a call gets at most one, only where its findings are predictable.
func TestFaultRates(t *testing.T) {
	_, _, sum := run(t, simulate.Config{Calls: 10000, Seed: 5, Faults: simulate.Faults{Duplicate: 0.01, Reorder: 0.005, Drop: 0.005, Illegal: 0.002}})
	for k, rate := range map[simulate.Fault]float64{
		simulate.FaultDuplicate: 0.01, simulate.FaultReorder: 0.005, simulate.FaultDrop: 0.005, simulate.FaultIllegal: 0.002,
	} {
		asked := rate * float64(sum.Events)
		got := float64(sum.Faults[k])
		assert.LessOrEqual(t, got, asked*1.2, k)
		assert.GreaterOrEqual(t, got, asked*0.2, "%s: %v injected, %v asked", k, got, asked)
	}
	assert.InDelta(t, 0.01*float64(sum.Events), float64(sum.Faults[simulate.FaultDuplicate]), 0.01*float64(sum.Events)*0.15,
		"a duplicate can go almost anywhere, so its rate is kept")
}

// Outcomes come in the mix's shares.
func TestMixShares(t *testing.T) {
	mix := simulate.Mix{fsm.Successful: 50, fsm.Missed: 20, fsm.Declined: 10, fsm.Busy: 5, fsm.Abandoned: 5, fsm.CustomerUnavailable: 5, fsm.NetworkFailure: 5}
	const n = 10000
	_, _, sum := run(t, simulate.Config{Calls: n, Seed: 11, Mix: mix})
	for st, share := range mix {
		got := float64(sum.Outcomes[st]) / n * 100
		sd := math.Sqrt(share*(100-share)/n) * 100 / 100 // binomial, in points
		assert.InDelta(t, share, got, 5*sd+0.1, "%s", st)
	}
	_, _, sum = run(t, simulate.Config{Calls: 500, Seed: 11, Mix: simulate.Mix{fsm.Busy: 1}})
	assert.Equal(t, map[fsm.State]int{fsm.Busy: 500}, sum.Outcomes)
}

// key is how a call went: its states, how the last was entered (input or
// timeout), and the participant of a network failure.
func key(states []fsm.State, byTimeout bool, p event.Participant) string {
	how := "input"
	if byTimeout {
		how = "timeout"
	}
	return calltest.Sequence(states) + " " + how + " " + string(p)
}

// Every path of the lifecycle occurs, with each network_failure
// participant and auto-answer: the simulator covers calltest.Paths.
func TestEveryPathOccurs(t *testing.T) {
	spec := fsm.Outgoing()
	// Rare outcomes made common, so that each path shows in a short run.
	mix := simulate.Mix{fsm.Successful: 20, fsm.Missed: 10, fsm.Declined: 10, fsm.Busy: 5, fsm.Abandoned: 10, fsm.CustomerUnavailable: 10, fsm.NetworkFailure: 35}
	log, _, _ := run(t, simulate.Config{Calls: 6000, Seed: 9, Mix: mix})
	type progress struct {
		states []fsm.State
		last   int64
	}
	calls := map[int64]*progress{}
	seen := map[string]int{}
	for _, ev := range decodeAll(t, log) {
		st, _ := spec.StateOf(ev.Event)
		c := calls[ev.CallID]
		if c == nil {
			c = &progress{}
			calls[ev.CallID] = c
		}
		c.states = append(c.states, st)
		if spec.Terminal(st) {
			// Inputs come at least a second before a deadline; a timeout
			// fires exactly at it.
			prev := c.states[len(c.states)-2]
			_, to, _ := spec.Timeout(prev)
			byTimeout := to == st && ev.Timestamp-c.last == int64(fsm.DefaultTimeout/time.Second)
			seen[key(c.states, byTimeout, ev.Participant)]++
		}
		c.last = ev.Timestamp
	}
	for _, c := range calltest.Paths(spec) {
		last := c.Scenario[len(c.Scenario)-1]
		byTimeout := last.Trigger == ""
		p := last.Participant
		if byTimeout && c.Path.End() == fsm.NetworkFailure {
			p = event.User // the accepted timeout's
		}
		assert.Positive(t, seen[key(c.Want, byTimeout, p)], "path %q never happened", c.Name)
	}
	assert.Len(t, seen, len(calltest.Paths(spec)), "and nothing else happened: %v", seen)
}

// Calls arrive at the asked rate, on average, and overlap like real
// traffic.
func TestRate(t *testing.T) {
	for _, rate := range []float64{2, 20, 200} {
		const n = 8000
		log, _, sum := run(t, simulate.Config{Calls: n, Seed: 2, Rate: rate, Mix: simulate.Mix{fsm.Busy: 1}})
		evs := decodeAll(t, log)
		var last int64
		for _, ev := range evs {
			if ev.Event == "popin_outgoing_call_initiated" {
				last = ev.Timestamp
			}
		}
		got := float64(n-1) / float64(last-evs[0].Timestamp)
		assert.InEpsilon(t, rate, got, 0.05, "rate %v: %v calls/s", rate, got)
		assert.Equal(t, n, sum.Outcomes[fsm.Busy])
	}
}

func TestCustomTimeouts(t *testing.T) {
	spec, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{fsm.Ringing: 10 * time.Second, fsm.Initiated: 0})
	require.NoError(t, err)
	log, _, sum := run(t, simulate.Config{Calls: 1000, Seed: 1, Spec: spec,
		Mix: simulate.Mix{fsm.Missed: 1, fsm.Successful: 1, fsm.CustomerUnavailable: 1}})
	rang := map[int64]int64{} // calls ringing, and since when
	for _, ev := range decodeAll(t, log) {
		r, ringing := rang[ev.CallID]
		delete(rang, ev.CallID)
		switch {
		case ev.Event == "popin_outgoing_call_ringing":
			rang[ev.CallID] = ev.Timestamp
		case ev.Event == "popin_outgoing_call_missed":
			assert.Equal(t, r+10, ev.Timestamp)
		case ringing:
			assert.LessOrEqual(t, ev.Timestamp, r+10, "%s before the shorter deadline", ev.Event)
		}
	}
	assert.Positive(t, sum.Outcomes[fsm.Missed])
	assert.Positive(t, sum.Outcomes[fsm.CustomerUnavailable], "by the unavailable input; the timeout is off")
	p, err := parse(log)
	require.NoError(t, err)
	findings, _, err := oracle(spec, p, reading{})
	require.NoError(t, err)
	assert.Empty(t, findings)
}

func TestConfigErrors(t *testing.T) {
	noRing, err := fsm.Outgoing().WithTimeouts(map[fsm.State]time.Duration{fsm.Ringing: 0})
	require.NoError(t, err)
	other, err := fsm.NewSpec(fsm.Config{
		Name: "tiny", EventPrefix: "x_", Initial: "a", States: []fsm.State{"a", "successful"}, Terminal: []fsm.State{"successful"},
		Transitions: []fsm.Transition{{From: "a", Trigger: "go", To: "successful"}},
	})
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  simulate.Config
		want string
	}{
		{"no calls", simulate.Config{}, "calls: 0, want at least 1"},
		{"negative rate", simulate.Config{Calls: 1, Rate: -1}, "rate: -1"},
		{"infinite rate", simulate.Config{Calls: 1, Rate: math.Inf(1)}, "rate: +Inf"},
		{"absurd rate", simulate.Config{Calls: 1, Rate: 1e10}, "more than one a nanosecond"},
		{"negative workers", simulate.Config{Calls: 1, Workers: -1}, "workers"},
		{"unknown outcome", simulate.Config{Calls: 1, Mix: simulate.Mix{"hung_up": 1}}, `unknown outcome "hung_up" (want one of successful, missed`},
		{"live outcome", simulate.Config{Calls: 1, Mix: simulate.Mix{fsm.Ringing: 1}}, `unknown outcome "ringing"`},
		{"negative share", simulate.Config{Calls: 1, Mix: simulate.Mix{fsm.Busy: -1}}, "busy=-1"},
		{"all zero", simulate.Config{Calls: 1, Mix: simulate.Mix{fsm.Busy: 0}}, "every share is 0"},
		{"fault rate", simulate.Config{Calls: 1, Faults: simulate.Faults{Drop: 1.5}}, "drop=1.5: want a rate from 0 to 1"},
		{"switched-off timeout", simulate.Config{Calls: 1, Spec: noRing}, `outcome "missed" cannot happen in this lifecycle: the ringing timeout is switched off`},
		{"other lifecycle", simulate.Config{Calls: 1, Spec: other, Mix: simulate.Mix{fsm.Successful: 1}}, `the spec has no ring from a`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := simulate.New(tt.cfg)
			require.ErrorIs(t, err, simulate.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err = simulate.New(simulate.Config{Calls: 1, Spec: noRing, Mix: simulate.Mix{fsm.Successful: 1}})
	assert.NoError(t, err, "without missed in the mix, the ringing timeout is not needed")
}

func TestParseMixAndFaults(t *testing.T) {
	m, err := simulate.ParseMix("successful=60, missed=15,declined=8.5")
	require.NoError(t, err)
	assert.Equal(t, simulate.Mix{fsm.Successful: 60, fsm.Missed: 15, fsm.Declined: 8.5}, m)
	assert.Equal(t, "declined=8.5,missed=15,successful=60", m.String())

	f, err := simulate.ParseFaults("duplicate=0.01,reorder=0.005,drop=0.005,illegal=0.002")
	require.NoError(t, err)
	assert.Equal(t, simulate.Faults{Duplicate: 0.01, Reorder: 0.005, Drop: 0.005, Illegal: 0.002}, f)
	assert.Equal(t, "duplicate=0.01,reorder=0.005,drop=0.005,illegal=0.002", f.String())

	for _, tt := range []struct{ in, want string }{
		{"", "mix: empty"},
		{"successful", `"successful": want KEY=NUMBER`},
		{"successful=lots", `successful="lots": not a number`},
		{"successful=NaN", `not a number`},
		{"successful=-1", "successful=-1: negative"},
		{"busy=1,busy=2", `outcome "busy" given twice`},
		{"=3", `want KEY=NUMBER`},
	} {
		_, err := simulate.ParseMix(tt.in)
		require.ErrorIs(t, err, simulate.ErrInvalidConfig, tt.in)
		assert.Contains(t, err.Error(), tt.want, tt.in)
	}
	for _, tt := range []struct{ in, want string }{
		{"lost=0.1", `unknown fault "lost" (want duplicate, reorder, drop or illegal)`},
		{"drop=0.1,drop=0.2", `"drop" given twice`},
		{"drop=x", "not a number"},
	} {
		_, err := simulate.ParseFaults(tt.in)
		require.ErrorIs(t, err, simulate.ErrInvalidConfig, tt.in)
		assert.Contains(t, err.Error(), tt.want, tt.in)
	}
}

func TestCancel(t *testing.T) {
	s, err := simulate.New(simulate.Config{Calls: 200000, Seed: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Run(ctx, io.Discard, nil)
	require.ErrorIs(t, err, context.Canceled)
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorStopsTheRun(t *testing.T) {
	s, err := simulate.New(simulate.Config{Calls: 100000, Seed: 1})
	require.NoError(t, err)
	_, err = s.Run(context.Background(), &failingWriter{after: 3 << 20}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk full")
}

func TestSummaryString(t *testing.T) {
	_, _, sum := run(t, simulate.Config{Calls: 40, Seed: 1, Faults: simulate.Faults{Duplicate: 0.05}})
	s := sum.String()
	assert.True(t, strings.HasPrefix(s, fmt.Sprintf("40 calls, %d events, %d lines, ", sum.Events, sum.Lines)), s)
	assert.Contains(t, s, "duplicate faults")
	assert.Contains(t, s, "findings expected")
}

func TestSimulatorIsReusable(t *testing.T) {
	s, err := simulate.New(simulate.Config{Calls: 300, Seed: 8, Faults: allFaults})
	require.NoError(t, err)
	var a, b bytes.Buffer
	_, err = s.Run(context.Background(), &a, nil)
	require.NoError(t, err)
	_, err = s.Run(context.Background(), &b, nil)
	require.NoError(t, err)
	assert.Equal(t, a.String(), b.String())
}
