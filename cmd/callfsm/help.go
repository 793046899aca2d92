package main

import (
	"context"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// helpCmd prints the usage of callfsm or of one subcommand: callfsm help [SUBCOMMAND].
type helpCmd struct {
	stdout io.Writer
	root   *ffcli.Command
}

func (h *helpCmd) command() *ffcli.Command {
	return &ffcli.Command{
		Name:       "help",
		ShortUsage: "callfsm help [subcommand]",
		ShortHelp:  "print help for callfsm or a subcommand",
		Exec:       h.exec,
	}
}

func (h *helpCmd) exec(_ context.Context, args []string) error {
	target := h.root
	if len(args) > 0 {
		target = nil
		for _, sub := range h.root.Subcommands {
			if sub.Name == args[0] {
				target = sub
			}
		}
		if target == nil {
			return usagef("help: unknown subcommand %q", args[0])
		}
	}
	_, err := fmt.Fprintln(h.stdout, ffcli.DefaultUsageFunc(target))
	return err
}
