package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callfsm/callfsm/call/check"
	"github.com/callfsm/callfsm/fsm"
)

// checkCmd replays event logs against the lifecycle:
// callfsm check [--format text|json] [--strict] [--max-findings N]
// [--timeout STATE=DURATION] [FILE...].
type checkCmd struct {
	stdout, stderr io.Writer
	stdin          io.Reader // nil: os.Stdin
	format         string
	strict         bool
	maxFindings    int
	timeouts       timeoutFlag

	// Hooks for tests; nil means the real thing.
	isTerminal func(io.Writer) bool
	now        func() time.Time
}

func (c *checkCmd) command() *ffcli.Command {
	fs := newFlagSet("check", c.stderr)
	fs.StringVar(&c.format, "format", "text", "output format: text (a line per finding, then a summary) or json (one document)")
	fs.BoolVar(&c.strict, "strict", false, "fail (exit 1) on warnings too")
	fs.IntVar(&c.maxFindings, "max-findings", 0, "list at most `N` findings (0: all); counting goes on")
	fs.Var(&c.timeouts, "timeout", "change a state's timeout, as STATE=DURATION (repeatable; 0 switches it off)")
	return &ffcli.Command{
		Name:       "check",
		ShortUsage: "callfsm check [flags] [FILE...]",
		ShortHelp:  "check that event logs (JSON Lines) follow the lifecycle",
		LongHelp: "Replays event logs, JSON Lines of the seed's payloads, and reports every event\n" +
			"that breaks the lifecycle: FILE:LINE: call CALL_ID: RULE: message. Several files\n" +
			"are one stream in the order given (rotated logs); no FILE or - reads standard\n" +
			"input; FILE.gz is decompressed. Rules and examples: docs/check.md.\n\n" +
			"Exit status: 0 no error found, 1 errors found (or warnings, with --strict),\n" +
			"2 usage or I/O error.",
		FlagSet: fs,
		Options: envOptions,
		Exec:    c.exec,
	}
}

func (c *checkCmd) exec(ctx context.Context, args []string) error {
	if c.format != "text" && c.format != "json" {
		return usagef("--format %q: want text or json", c.format)
	}
	if c.maxFindings < 0 {
		return usagef("--max-findings %d: want 0 or more", c.maxFindings)
	}
	spec, err := c.timeouts.spec()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		args = []string{"-"}
	}
	ins, err := c.open(args)
	defer ins.close()
	if err != nil {
		return usagef("%v", err) // exit 2: an input cannot be read
	}

	out := bufio.NewWriterSize(c.stdout, 64<<10)
	bar := c.progress(ins)
	cfg := check.Config{Spec: spec, MaxFindings: c.maxFindings, OnProgress: bar.update}
	if c.format == "text" {
		live := bar.isTerminal(c.stdout) // show findings as they come
		cfg.OnFinding = func(f check.Finding) {
			bar.clear()
			fmt.Fprintln(out, f)
			if live {
				_ = out.Flush()
			}
		}
	}
	checker, err := check.New(cfg)
	if err != nil {
		return err
	}
	rep, err := checker.Check(ctx, ins.inputs...)
	bar.clear()
	if err != nil {
		_ = out.Flush()
		if ctx.Err() != nil {
			return fmt.Errorf("check interrupted: %w", err)
		}
		return usagef("%v", err) // exit 2: an input failed while being read
	}
	if c.format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		err = enc.Encode(rep)
	} else {
		err = summary(out, spec, rep, c.maxFindings)
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if rep.Errors > 0 || c.strict && rep.Warnings > 0 {
		return fmt.Errorf("check failed: %s, %s", plural(rep.Errors, "error"), plural(rep.Warnings, "warning"))
	}
	return nil
}

// inputs are the opened logs.
type inputs struct {
	inputs  []check.Input
	closers []io.Closer
	total   int64         // bytes of the regular files, 0 if unknown
	read    *atomic.Int64 // bytes read from the files so far
}

func (in *inputs) close() {
	for _, c := range in.closers {
		_ = c.Close()
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// open opens every input up front, so that a missing file or a bad gzip
// header fails before anything is checked. "-" is standard input; names
// ending in .gz, and gzip data on standard input, are decompressed.
func (c *checkCmd) open(args []string) (*inputs, error) {
	in := &inputs{read: new(atomic.Int64)}
	known := true
	for _, name := range args {
		var r io.Reader
		display := name
		if name == "-" {
			display = "<stdin>"
			r = c.stdin
			if r == nil {
				r = os.Stdin
			}
			known = false
		} else {
			f, err := os.Open(name)
			if err != nil {
				return in, err
			}
			in.closers = append(in.closers, f)
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				in.total += st.Size()
			} else {
				known = false
			}
			r = f
		}
		br := bufio.NewReaderSize(countingReader{r, in.read}, 256<<10)
		r = br
		magic, _ := br.Peek(2)
		if strings.HasSuffix(name, ".gz") || name == "-" && string(magic) == "\x1f\x8b" {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return in, fmt.Errorf("%s: not a readable gzip file: %w", display, err)
			}
			in.closers = append(in.closers, zr)
			r = zr
		}
		in.inputs = append(in.inputs, check.Input{Name: display, R: r})
	}
	if !known {
		in.total = 0
	}
	return in, nil
}

// summary writes the text report's closing lines.
func summary(w io.Writer, spec *fsm.Spec, rep *check.Report, maxFindings int) error {
	files := plural(len(rep.Files), "file")
	fmt.Fprintf(w, "checked %s, %s: %s in %s\n", files, plural(rep.Lines, "line"), plural(rep.Events, "event"), plural(rep.Calls, "call"))
	var outcomes []string
	for _, st := range spec.TerminalStates() {
		outcomes = append(outcomes, fmt.Sprintf("%s %d", st, rep.Outcomes[string(st)]))
	}
	fmt.Fprintf(w, "outcomes: %s; not ended %d\n", strings.Join(outcomes, ", "), notEnded(rep))
	for _, st := range spec.States() {
		d, ok := rep.TimeInState[string(st)]
		if !ok {
			continue
		}
		label := "time in " + string(st)
		switch st {
		case fsm.Ringing:
			label = "ring time"
		case fsm.Started:
			label = "talk time"
		}
		fmt.Fprintf(w, "%s: p50 %ds, p90 %ds, p99 %ds, max %ds (%s)\n", label, d.P50, d.P90, d.P99, d.Max, plural(d.Calls, "call"))
	}
	fmt.Fprintf(w, "errors: %d%s\n", rep.Errors, byRule(rep, check.SeverityError))
	fmt.Fprintf(w, "warnings: %d%s\n", rep.Warnings, byRule(rep, check.SeverityWarning))
	if rep.Unlisted > 0 {
		fmt.Fprintf(w, "listed the first %d findings (--max-findings); %d more not listed\n", maxFindings, rep.Unlisted)
	}
	return nil
}

// notEnded counts the calls live at the end of input: incomplete, or
// overdue.
func notEnded(rep *check.Report) int {
	n := rep.Calls
	for _, ended := range rep.Outcomes {
		n -= ended
	}
	return n
}

// byRule is " (rule n, rule n)" for the rules of a severity, most frequent
// first.
func byRule(rep *check.Report, sev check.Severity) string {
	var parts []string
	for _, r := range check.Rules() {
		if n := rep.Rules[r]; n > 0 && r.Severity() == sev {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// progressBar draws the check's progress (see progressLine): bytes read
// of the inputs' total, events, rate and time left.
type progressBar struct {
	*progressLine
	total int64
	read  *atomic.Int64
}

func (c *checkCmd) progress(in *inputs) *progressBar {
	return &progressBar{progressLine: newProgressLine(c.stderr, c.isTerminal, c.now), total: in.total, read: in.read}
}

func (p *progressBar) update(pr check.Progress) {
	elapsed, ok := p.due()
	if !ok {
		return
	}
	read := p.read.Load()
	rate := float64(pr.Events) / elapsed.Seconds()
	line := fmt.Sprintf("checking: %d MB, %d events, %.0f events/s", read>>20, pr.Events, rate)
	if p.total > 0 {
		frac := min(1, float64(read)/float64(p.total))
		const width = 30
		done := int(frac * width)
		eta := time.Duration(float64(elapsed) * (1 - frac) / max(frac, 1e-9)).Round(time.Second)
		line = fmt.Sprintf("checking: %3.0f%% [%s%s] %d/%d MB, %.0f events/s, %v left",
			frac*100, strings.Repeat("#", done), strings.Repeat("-", width-done), read>>20, p.total>>20, rate, eta)
	}
	p.show(line)
}
