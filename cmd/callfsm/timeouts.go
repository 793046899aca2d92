package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/callfsm/callfsm/fsm"
)

// timeoutFlag is a repeatable --timeout STATE=DURATION flag that changes the
// default lifecycle's timeouts.
type timeoutFlag map[fsm.State]time.Duration

func (f *timeoutFlag) String() string {
	var parts []string
	for st, d := range *f {
		parts = append(parts, fmt.Sprintf("%s=%s", st, d))
	}
	return strings.Join(parts, ",")
}

// Set parses one STATE=DURATION; the state must have a timeout in the
// default lifecycle.
func (f *timeoutFlag) Set(v string) error {
	state, dur, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want STATE=DURATION (e.g. ringing=45s), got %q", v)
	}
	d, err := time.ParseDuration(dur)
	if dur == "0" {
		d, err = 0, nil
	}
	if err != nil {
		return fmt.Errorf("bad duration %q for state %q: %v", dur, state, err)
	}
	if *f == nil {
		*f = make(timeoutFlag)
	}
	(*f)[fsm.State(state)] = d
	return nil
}

// spec returns the default lifecycle with the flag's timeouts applied.
func (f timeoutFlag) spec() (*fsm.Spec, error) {
	spec := fsm.Outgoing()
	if len(f) == 0 {
		return spec, nil
	}
	custom, err := spec.WithTimeouts(f)
	if err != nil {
		return nil, usagef("--timeout: %v", err)
	}
	return custom, nil
}
