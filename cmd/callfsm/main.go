// Command callfsm runs, draws and checks call lifecycles.
//
// Usage:
//
//	callfsm <subcommand> [flags]
//
// Subcommands: serve, check, simulate, diagram, version, help. Run "callfsm help"
// for the list and "callfsm <subcommand> -h" for a subcommand's flags.
//
// Exit status: 0 on success, 1 when the work failed, 2 on a usage error (an
// unknown subcommand or flag, a bad flag value).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
