package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// versionCmd prints the build's version: callfsm version.
type versionCmd struct {
	stdout io.Writer
}

func (v *versionCmd) command() *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "callfsm version",
		ShortHelp:  "print the version, commit and Go version",
		Exec:       v.exec,
	}
}

func (v *versionCmd) exec(context.Context, []string) error {
	version, commit, goVersion := "(devel)", "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					commit += "+dirty"
				}
			}
		}
	}
	_, err := fmt.Fprintf(v.stdout, "callfsm %s (commit %s, %s)\n", version, commit, goVersion)
	return err
}
