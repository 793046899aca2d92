package simulate_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check"
	"github.com/callfsm/callfsm/call/simulate"
	"github.com/callfsm/callfsm/fsm"
)

// checkLog runs the replay checker (package call/check) on a log.
func checkLog(t *testing.T, spec *fsm.Spec, log []byte) *check.Report {
	t.Helper()
	c, err := check.New(check.Config{Spec: spec})
	require.NoError(t, err)
	rep, err := c.Check(context.Background(), check.Input{Name: "sim.jsonl", R: bytes.NewReader(log)})
	require.NoError(t, err)
	return rep
}

// With no faults, the checker finds nothing, counts exactly the calls
// simulated, and the outcomes the engine reached.
func TestCheckFindsNothingWithoutFaults(t *testing.T) {
	const n = 5000
	log, _, sum := run(t, simulate.Config{Calls: n, Seed: 21})
	rep := checkLog(t, nil, log)
	assert.Empty(t, rep.Findings)
	assert.Zero(t, rep.Errors+rep.Warnings)
	assert.Equal(t, n, rep.Calls)
	assert.Equal(t, int(sum.Events), rep.Events)
	for st, count := range sum.Outcomes {
		assert.Equal(t, count, rep.Outcomes[string(st)], st)
	}
	assert.Zero(t, rep.Incomplete)
}

// The checker's findings on a faulty log are exactly the truth file's.
func TestCheckFindsExactlyTheTruth(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  simulate.Config
	}{
		{"every fault", simulate.Config{Calls: 3000, Seed: 1, Faults: allFaults, Rate: 10}},
		{"the issue's rates", simulate.Config{Calls: 8000, Seed: 2, Faults: simulate.Faults{Duplicate: 0.01, Reorder: 0.005, Drop: 0.005, Illegal: 0.002}}},
		{"busy traffic", simulate.Config{Calls: 5000, Seed: 3, Faults: allFaults, Rate: 1000}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log, truthFile, _ := run(t, tt.cfg)
			recs, err := simulate.ReadTruth(bytes.NewReader(truthFile))
			require.NoError(t, err)
			require.NotEmpty(t, recs)
			rep := checkLog(t, nil, log)
			got := make([]finding, len(rep.Findings))
			for i, f := range rep.Findings {
				got[i] = finding{int64(f.Line), f.CallID, simulate.Rule(f.Rule)}
			}
			sortFindings(got)
			require.Equal(t, truthFindings(recs), got)
			assert.Equal(t, tt.cfg.Calls, rep.Calls)
		})
	}
}
