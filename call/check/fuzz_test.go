package check

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/check/checktest"
)

// nonBlank counts the lines a check must account for in one input.
func nonBlank(data []byte) (lines, all int) {
	for i, ln := range bytes.Split(data, []byte("\n")) {
		if i == 0 {
			ln = bytes.TrimPrefix(ln, bom)
		}
		if len(bytes.Trim(ln, " \t\r")) > 0 {
			lines++
		}
		if i < bytes.Count(data, []byte("\n")) || len(ln) > 0 {
			all++
		}
	}
	return lines, all
}

// FuzzCheck: no input makes the checker panic, hang or fail, and every
// non-blank line is accounted for, as an event or as a finding that it is
// not one; findings are in input order and point at real lines.
func FuzzCheck(f *testing.F) {
	log, _ := engineLog(f, checktest.Config{Calls: 6, Seed: 8})
	f.Add([]byte(log), uint16(0), uint16(0), uint16(1024))
	f.Add([]byte(log), uint16(len(log)/3), uint16(len(log)/2), uint16(300))
	f.Add([]byte("\xEF\xBB\xBF"+strings.ReplaceAll(log, "\n", "\r\n")), uint16(5), uint16(900), uint16(2000))
	f.Add([]byte(lines(at(1, R, 0), at(1, I, 1), `{"event":"x"}`, `[`, "", at(1, NF, 2, withParticipant("both")))), uint16(40), uint16(41), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, s1, s2, maxLine uint16) {
		a, b := min(int(s1), len(data)), min(int(s2), len(data))
		if a > b {
			a, b = b, a
		}
		parts := [][]byte{data[:a], data[a:b], data[b:]}
		c, err := New(Config{MaxLineBytes: 64 + int(maxLine)%2048, Workers: 2})
		require.NoError(t, err)
		c.bufSize = c.cfg.MaxLineBytes + 2 + 37 // long lines take the reader's path
		var ins []Input
		want, total := 0, []int{}
		for i, p := range parts {
			ins = append(ins, Input{Name: string(rune('a' + i)), R: bytes.NewReader(p)})
			n, all := nonBlank(p)
			want += n
			total = append(total, all)
		}
		rep, err := c.Check(context.Background(), ins...)
		require.NoError(t, err)
		require.Equal(t, want, rep.Lines, "non-blank lines")
		require.Equal(t, rep.Lines, rep.Events+rep.Rules[RuleMalformed]+rep.Rules[RuleMissingField])
		require.Equal(t, rep.Errors+rep.Warnings, len(rep.Findings))
		last := pos{}
		for _, f := range rep.Findings {
			file := int(f.File[0] - 'a')
			p := pos{file, f.Line}
			assert.False(t, less(p, last), "%v after %v", p, last)
			last = p
			assert.True(t, f.Line >= 1 && f.Line <= total[file], "line %d of %d in %s", f.Line, total[file], f.File)
		}
	})
}
