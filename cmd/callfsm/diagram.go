package main

import (
	"context"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callfsm/callfsm/fsm"
)

// diagramCmd draws the lifecycle: callfsm diagram --format mermaid|dot.
type diagramCmd struct {
	stdout, stderr io.Writer
	format         string
	timeouts       timeoutFlag
}

func (d *diagramCmd) command() *ffcli.Command {
	fs := newFlagSet("diagram", d.stderr)
	fs.StringVar(&d.format, "format", string(fsm.Mermaid), "diagram format: mermaid or dot")
	fs.Var(&d.timeouts, "timeout", "change a state's timeout, as STATE=DURATION (repeatable; 0 switches it off)")
	return &ffcli.Command{
		Name:       "diagram",
		ShortUsage: "callfsm diagram [--format mermaid|dot]",
		ShortHelp:  "draw the call lifecycle (Mermaid or Graphviz)",
		LongHelp:   "Prints the lifecycle as a Mermaid state diagram or a Graphviz digraph,\ndrawn by looplab/fsm's visualizers.",
		FlagSet:    fs,
		Options:    envOptions,
		Exec:       d.exec,
	}
}

func (d *diagramCmd) exec(_ context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("diagram takes no arguments, got %q", args)
	}
	spec, err := d.timeouts.spec()
	if err != nil {
		return err
	}
	if d.format != string(fsm.Mermaid) && d.format != string(fsm.Graphviz) {
		return usagef("--format %q: want mermaid or dot", d.format)
	}
	out, err := spec.Diagram(fsm.Format(d.format))
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(d.stdout, out)
	return err
}
