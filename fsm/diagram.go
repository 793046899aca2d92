package fsm

import (
	"fmt"
	"strings"

	lfsm "github.com/looplab/fsm"
)

// Format is a diagram format.
type Format string

// The diagram formats, both drawn by looplab/fsm's visualizers.
const (
	Mermaid  Format = "mermaid"
	Graphviz Format = "dot"
)

// Diagram draws the lifecycle with looplab/fsm's visualizer for the format,
// from a machine in the initial state. The output is deterministic (sorted).
func (s *Spec) Diagram(f Format) (string, error) {
	m := s.NewFSM(s.initial)
	switch f {
	case Mermaid:
		return lfsm.VisualizeWithType(m, lfsm.MermaidStateDiagram)
	case Graphviz:
		return lfsm.VisualizeWithType(m, lfsm.GRAPHVIZ)
	default:
		return "", fmt.Errorf("unknown diagram format %q (want %q or %q)", f, Mermaid, Graphviz)
	}
}

// Table renders the transition table as Markdown, one row per transition in
// table order, with the event each emits and the timeout that fires it.
func (s *Spec) Table() string {
	var b strings.Builder
	b.WriteString("| from | trigger | to | event emitted | note |\n|---|---|---|---|---|\n")
	for _, tr := range s.transitions {
		var note []string
		if tr.Trigger == Timeout {
			if d, _, ok := s.Timeout(tr.From); ok {
				note = append(note, "after "+d.String())
			} else {
				note = append(note, "switched off")
			}
		}
		if tr.Participant != "" {
			note = append(note, "participant "+tr.Participant)
		} else if s.NeedsParticipant(tr.To) {
			note = append(note, "participant user or agent")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | `%s` | %s |\n", tr.From, tr.Trigger, tr.To, s.EventName(tr.To), strings.Join(note, ", "))
	}
	return b.String()
}
