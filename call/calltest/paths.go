package calltest

import (
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

// Case is one model-based test case: a path of the lifecycle as a scenario
// to play, and the states it must enter.
type Case struct {
	// Name is the scenario, e.g. "ring accept network_failure:agent" or
	// "ring wait:30s"; it makes a good subtest name.
	Name string
	// Path is the lifecycle path the case takes.
	Path fsm.Path
	// Scenario plays the path on a new call: each trigger as an input, each
	// timeout as a wait of exactly the state's timeout.
	Scenario Scenario
	// Want is the states the call enters, the initial one first.
	Want []fsm.State
}

// Paths returns a case for every path of spec from its initial state to a
// terminal one (fsm.Spec.Paths). A path into a participant state whose
// participant the input chooses (network_failure) gives one case per
// participant, user then agent. For the Popin outgoing lifecycle that is
// 17 cases.
func Paths(spec *fsm.Spec) []Case {
	var out []Case
	for _, p := range spec.Paths() {
		out = append(out, cases(spec, p, []event.Participant{event.User, event.Agent})...)
	}
	return out
}

// CoveringPaths returns a case for every path of a set that takes every
// transition of spec at least once, the shortest way
// (fsm.Spec.CoveringPaths). Participant states are entered as user.
func CoveringPaths(spec *fsm.Spec) []Case {
	var out []Case
	for _, p := range spec.CoveringPaths() {
		out = append(out, cases(spec, p, []event.Participant{event.User})...)
	}
	return out
}

// cases turns a path into scenarios, one per participant choice along it.
func cases(spec *fsm.Spec, p fsm.Path, participants []event.Participant) []Case {
	scenarios := []Scenario{nil}
	for _, tr := range p {
		if tr.Trigger == fsm.Timeout {
			d, _, _ := spec.Timeout(tr.From) // on: fsm paths take no switched-off timeout
			scenarios = appendStep(scenarios, Step{Wait: d})
			continue
		}
		if !spec.NeedsParticipant(tr.To) || tr.Participant != "" {
			scenarios = appendStep(scenarios, Step{Trigger: tr.Trigger})
			continue
		}
		var forked []Scenario
		for _, part := range participants {
			forked = append(forked, appendStep(scenarios, Step{Trigger: tr.Trigger, Participant: part})...)
		}
		scenarios = forked
	}
	out := make([]Case, len(scenarios))
	for i, sc := range scenarios {
		out[i] = Case{Name: sc.String(), Path: p, Scenario: sc, Want: p.States()}
	}
	return out
}

// appendStep returns copies of the scenarios with s appended to each.
func appendStep(scenarios []Scenario, s Step) []Scenario {
	out := make([]Scenario, len(scenarios))
	for i, sc := range scenarios {
		out[i] = append(append(Scenario(nil), sc...), s)
	}
	return out
}
