package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callfsm/callfsm/call/simulate"
)

// simulateCmd writes a realistic event log made by the real engine on a
// virtual clock: callfsm simulate --calls N --seed S [...].
type simulateCmd struct {
	stdout, stderr io.Writer
	calls          int
	seed           uint64
	start          int64
	rate           float64
	mix            string
	faults         string
	truth          string
	output         string
	quiet          bool
	timeouts       timeoutFlag
}

func (s *simulateCmd) command() *ffcli.Command {
	fs := newFlagSet("simulate", s.stderr)
	fs.IntVar(&s.calls, "calls", 0, "how many calls arrive (required)")
	fs.Uint64Var(&s.seed, "seed", 1, "seed of every random draw: the same flags give the same bytes")
	fs.Int64Var(&s.start, "start", simulate.DefaultStartUnix, "when the first call arrives, in Unix seconds")
	fs.Float64Var(&s.rate, "rate", simulate.DefaultRate, "mean arrival rate, in calls per second (a Poisson process)")
	fs.StringVar(&s.mix, "mix", "", "outcomes' shares, as OUTCOME=SHARE,…; outcomes left out get none (default "+simulate.DefaultMix().String()+")")
	fs.StringVar(&s.faults, "faults", "", "faults to inject, as KIND=RATE,… with KIND duplicate, reorder, drop or illegal and RATE a share of events")
	fs.StringVar(&s.truth, "truth", "", "write the findings the faults must yield to `FILE`, as JSON Lines (line, call_id, rule, fault, event)")
	fs.StringVar(&s.output, "o", "", "write the log to `FILE` instead of standard output")
	fs.BoolVar(&s.quiet, "q", false, "print no summary on standard error")
	fs.Var(&s.timeouts, "timeout", "change a state's timeout, as STATE=DURATION (repeatable; 0 switches it off)")
	return &ffcli.Command{
		Name:       "simulate",
		ShortUsage: "callfsm simulate --calls N [--seed S] [--start UNIX] [--rate CALLS_PER_S] [--mix ...] [--faults ...] [--truth FILE] [-o FILE]",
		ShortHelp:  "write a realistic event log, made by the real engine on a virtual clock",
		LongHelp: "Simulates N calls through the engine on a virtual clock: calls arrive at --rate,\n" +
			"ring, are answered, talk and end in the --mix of outcomes; a missed call is\n" +
			"missed because its ring timer fired. Writes the events as JSON Lines ordered by\n" +
			"timestamp, the same bytes for the same flags on every run and machine.\n" +
			"--faults injects redeliveries, reordering, dropped and illegal events, and\n" +
			"--truth writes the findings `callfsm check` must report for them.\n" +
			"A one-line summary goes to standard error (-q: none).",
		FlagSet: fs,
		Options: envOptions,
		Exec:    s.exec,
	}
}

func (s *simulateCmd) exec(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("simulate takes no arguments, got %q", args)
	}
	if s.calls <= 0 {
		return usagef("--calls %d: want the number of calls, at least 1", s.calls)
	}
	spec, err := s.timeouts.spec()
	if err != nil {
		return err
	}
	cfg := simulate.Config{Calls: s.calls, Seed: s.seed, Start: time.Unix(s.start, 0), Rate: s.rate, Spec: spec}
	if s.rate <= 0 {
		return usagef("--rate %v: want a positive number of calls per second", s.rate)
	}
	if s.mix != "" {
		if cfg.Mix, err = simulate.ParseMix(s.mix); err != nil {
			return usagef("--mix: %v", unwrapInvalid(err))
		}
	}
	if s.faults != "" {
		if cfg.Faults, err = simulate.ParseFaults(s.faults); err != nil {
			return usagef("--faults: %v", unwrapInvalid(err))
		}
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// The engine makes short-lived garbage on every transition and
		// the live heap is small (live calls only): collecting less often
		// saves a tenth of the CPU for a bounded ~100 MB more. GOGC
		// overrides.
		debug.SetGCPercent(400)
	}
	sim, err := simulate.New(cfg)
	if errors.Is(err, simulate.ErrInvalidConfig) {
		return usagef("%v", unwrapInvalid(err))
	}
	if err != nil {
		return err
	}

	out, closeOut, err := create(s.output, s.stdout)
	if err != nil {
		return err
	}
	var truth io.Writer
	closeTruth := func() error { return nil }
	if s.truth != "" {
		if truth, closeTruth, err = create(s.truth, nil); err != nil {
			_ = closeOut()
			return err
		}
	}
	sum, err := sim.Run(ctx, out, truth)
	err = errors.Join(err, closeOut(), closeTruth())
	if err != nil {
		return err
	}
	if !s.quiet {
		fmt.Fprintln(s.stderr, "callfsm simulate:", sum)
	}
	return nil
}

// create opens path for writing, or returns std when path is "" or "-".
func create(path string, std io.Writer) (io.Writer, func() error, error) {
	if std != nil && (path == "" || path == "-") {
		return std, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// unwrapInvalid drops the "simulate: invalid configuration: " prefix, which
// the usage message replaces.
func unwrapInvalid(err error) string {
	const prefix = "simulate: invalid configuration: "
	msg := err.Error()
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}
