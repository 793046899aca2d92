package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is a bad command line: it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// envOptions makes every flag also read a CALLFSM_* environment variable
// (--data-dir reads CALLFSM_DATA_DIR).
var envOptions = []ff.Option{ff.WithEnvVarPrefix("CALLFSM")}

// run is the whole program but for the process: it parses args, runs the
// subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	var noExec ffcli.NoExecError
	if err := root.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &noExec):
			fmt.Fprintln(stderr, ffcli.DefaultUsageFunc(noExec.Command))
		default:
			fmt.Fprintln(stderr, "callfsm:", err)
		}
		return exitUsage
	}
	err := root.Run(ctx)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "callfsm:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "callfsm:", err)
		return exitFail
	}
}

// newRoot builds the command tree.
func newRoot(stdout, stderr io.Writer) *ffcli.Command {
	root := &ffcli.Command{
		Name:       "callfsm",
		ShortUsage: "callfsm <subcommand> [flags]",
		LongHelp: "callfsm is a call-lifecycle state-machine engine for the Popin Seller App's\n" +
			"outgoing-call events. Exit status: 0 success, 1 failure, 2 usage error.",
		FlagSet: newFlagSet("callfsm", stderr),
	}
	root.Subcommands = []*ffcli.Command{
		(&serveCmd{stdout: stdout, stderr: stderr}).command(),
		(&diagramCmd{stdout: stdout, stderr: stderr}).command(),
		(&simulateCmd{stdout: stdout, stderr: stderr}).command(),
		(&checkCmd{stdout: stdout, stderr: stderr}).command(),
		(&logCmd{stdout: stdout, stderr: stderr}).command(),
		(&versionCmd{stdout: stdout}).command(),
		(&helpCmd{stdout: stdout, root: root}).command(),
	}
	return root
}
