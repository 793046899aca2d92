package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// TruthRecord is one finding an injected fault must make the replay checker
// report: a line of the truth file (--truth).
type TruthRecord struct {
	// Line is the output line the finding is on, from 1.
	Line int64 `json:"line"`
	// CallID is the call it is about.
	CallID int64 `json:"call_id"`
	// Rule is the checker's rule id, e.g. "illegal-transition".
	Rule Rule `json:"rule"`
	// Fault is the fault that causes it.
	Fault Fault `json:"fault"`
	// Event is the event name on that line.
	Event string `json:"event"`
}

// ReadTruth reads a truth file written by Run.
func ReadTruth(r io.Reader) ([]TruthRecord, error) {
	var out []TruthRecord
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		var rec TruthRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("simulate: truth line %d: %w", n, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("simulate: read truth: %w", err)
	}
	return out, nil
}
