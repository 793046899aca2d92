package check

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/check/checktest"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the time test logs start at.
const t0 = 1771832273

// ev is an event of call id entering st at t0+at, with the seed's identity.
func ev(id int64, st fsm.State, at int64, opts ...func(*event.Event)) event.Event {
	e := event.Event{
		Event: "popin_outgoing_call_" + string(st), SessionID: fmt.Sprintf("session-%d", id),
		UserID: 58559, CallID: id,
		Agent:     event.AgentInfo{Name: "Sasha", Email: "menonaiswarya0@gmail.com"},
		User:      event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta:      event.Meta{Product: event.Product{Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones"}},
		Timestamp: t0 + at,
	}
	if st == fsm.NetworkFailure {
		e.Participant = event.User
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

// line encodes an event as a log line, without its '\n'.
func line(e event.Event) string { return string(e.AppendJSON(nil)) }

// lines joins lines into a log.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// call is the lines of one call entering each state in turn, a second
// apart.
func call(id int64, states ...fsm.State) []string {
	var out []string
	for i, st := range states {
		out = append(out, line(ev(id, st, int64(i))))
	}
	return out
}

// got is a finding reduced to what tests compare.
type got struct {
	Line int
	Rule Rule
}

func reduce(fs []Finding) []got {
	out := []got{}
	for _, f := range fs {
		out = append(out, got{f.Line, f.Rule})
	}
	return out
}

// run checks inputs (name, content pairs) with cfg.
func run(t testing.TB, cfg Config, named ...string) *Report {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	var ins []Input
	for i := 0; i+1 < len(named); i += 2 {
		ins = append(ins, Input{Name: named[i], R: strings.NewReader(named[i+1])})
	}
	rep, err := c.Check(context.Background(), ins...)
	require.NoError(t, err)
	return rep
}

// check checks one log with the default config.
func check(t testing.TB, log string) *Report {
	t.Helper()
	return run(t, Config{}, "log", log)
}

// engineLog is a legal log written by the engine.
func engineLog(t testing.TB, cfg checktest.Config) (string, checktest.Stats) {
	t.Helper()
	var b bytes.Buffer
	st, err := checktest.Write(&b, cfg)
	require.NoError(t, err)
	return b.String(), st
}
