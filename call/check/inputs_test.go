package check

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check/checktest"
)

// Inputs are one stream: a call may start in one and end in the next, and
// line numbers count from 1 in each.
func TestInputsAreOneStream(t *testing.T) {
	t.Parallel()
	a := lines(at(1, I, 0), at(1, R, 1))
	b := lines(at(1, A, 2), at(1, OK, 3))
	rep := run(t, Config{}, "a.log", a, "b.log", b)
	assert.Equal(t, []string{"a.log", "b.log"}, rep.Files)
	require.Len(t, rep.Findings, 1)
	assert.Equal(t, "b.log:2: call 1: illegal-transition: popin_outgoing_call_successful cannot follow accepted; "+
		"expected popin_outgoing_call_started, popin_outgoing_call_abandoned or popin_outgoing_call_network_failure",
		rep.Findings[0].String())
	assert.Equal(t, 1, rep.Calls)
	assert.Equal(t, 1, rep.Outcomes["successful"])
}

func TestLastLineWithoutNewlineEndsWithItsInput(t *testing.T) {
	t.Parallel()
	rep := run(t, Config{}, "a", at(1, I, 0)+"\n"+at(1, R, 1), "b", at(1, A, 2))
	assert.Equal(t, 3, rep.Events)
	assert.Equal(t, []got{{1, RuleIncomplete}}, reduce(rep.Findings))
	assert.Equal(t, "b", rep.Findings[0].File)
}

func TestLineEndsBOMBlanksAndUnknownFields(t *testing.T) {
	t.Parallel()
	bom := "\xEF\xBB\xBF"
	a := bom + at(1, I, 0) + "\r\n\r\n   \t\r\n" + strings.Replace(at(1, R, 1), `{`, `{"extra":{"x":[1,2]},`, 1) + "\r\n"
	b := bom + at(1, A, 2) + "\n\n" + at(1, S, 3) + "\r\n" + bom + at(1, OK, 4)
	rep := run(t, Config{}, "a", a, "b", b)
	assert.Equal(t, []got{{3, RuleIncomplete}, {4, RuleMalformed}}, reduce(rep.Findings), "a BOM is only accepted at the start of an input")
	assert.Equal(t, 5, rep.Lines)
	assert.Equal(t, "b", rep.Findings[1].File)
	assert.Contains(t, rep.Findings[1].Message, `invalid character 'ï'`)
}

// Lines longer than the read buffer are read through, never held whole,
// and the check goes on with the right line numbers.
func TestLongLinesAreSkipped(t *testing.T) {
	t.Parallel()
	long := `{"event":"` + strings.Repeat("x", 10_000) + `"}`
	pad := `{"pad":"` + strings.Repeat("y", 590) + `"}`
	a := lines(at(1, I, 0), long, at(1, R, 1), pad, at(1, A, 2))
	b := long + "\r\n" + at(1, S, 3) + "\n" + long
	c, err := New(Config{MaxLineBytes: 500})
	require.NoError(t, err)
	c.bufSize = 1024 // a long line fills it without an end; pad does not
	for name, r := range map[string]func(string) io.Reader{
		"whole":       func(s string) io.Reader { return strings.NewReader(s) },
		"byte a time": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	} {
		t.Run(name, func(t *testing.T) {
			rep, err := c.Check(context.Background(), Input{"a", r(a)}, Input{"b", r(b)})
			require.NoError(t, err)
			var where []string
			for _, f := range rep.Findings {
				where = append(where, f.String())
			}
			assert.Equal(t, []string{
				"a:2: call ?: malformed: line of 10012 bytes is longer than the 500 allowed: skipped",
				"a:4: call ?: malformed: line of 600 bytes is longer than the 500 allowed: skipped",
				"b:1: call ?: malformed: line of 10012 bytes is longer than the 500 allowed: skipped",
				"b:2: call 1: incomplete: has not ended: still in started since 1771832276 at the end of input",
				"b:3: call ?: malformed: line of 10012 bytes is longer than the 500 allowed: skipped",
			}, where)
			assert.Equal(t, 4, rep.Events)
			assert.Equal(t, 8, rep.Lines)
		})
	}
}

// A reader that gives one byte at a time, a small buffer and several
// workers give the same report as one worker and big reads.
func TestReportDoesNotDependOnBatching(t *testing.T) {
	t.Parallel()
	log, _ := engineLog(t, checktest.Config{Calls: 300, Seed: 3, StopEarly: true})
	// Break a few lines.
	ls := strings.Split(log, "\n")
	for i := 7; i < len(ls); i += 97 {
		ls[i] = ls[i][:len(ls[i])/2]
	}
	log = strings.Join(ls, "\n")
	want := run(t, Config{Workers: 1}, "log", log)
	require.NotEmpty(t, want.Findings)

	c, err := New(Config{Workers: 3, MaxLineBytes: 600})
	require.NoError(t, err)
	c.bufSize = 2048
	rep, err := c.Check(context.Background(), Input{"log", iotest.OneByteReader(strings.NewReader(log))})
	require.NoError(t, err)
	assert.Equal(t, want, rep)
}

func TestReadErrorsFailTheCheck(t *testing.T) {
	t.Parallel()
	c, err := New(Config{})
	require.NoError(t, err)
	boom := errors.New("boom")
	_, err = c.Check(context.Background(), Input{"a", strings.NewReader(lines(at(1, I, 0)))},
		Input{"b", iotest.DataErrReader(iotest.ErrReader(boom))})
	require.ErrorIs(t, err, boom)
	assert.EqualError(t, err, "read b: boom")
}

func TestCancelledCheckStops(t *testing.T) {
	t.Parallel()
	log, _ := engineLog(t, checktest.Config{Calls: 2000, Seed: 4})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(Config{OnProgress: func(Progress) { cancel() }})
	require.NoError(t, err)
	c.bufSize = 4096
	_, err = c.Check(ctx, Input{"log", strings.NewReader(log)})
	require.ErrorIs(t, err, context.Canceled)
}
