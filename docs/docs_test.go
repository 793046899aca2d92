// Package docs holds callfsm's documents. Its test regenerates the parts
// that follow from the code (diagrams, tables, example payloads) and fails
// when a document no longer matches; run `go test ./docs -update` to rewrite
// them.
package docs

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

var update = flag.Bool("update", false, "rewrite the generated documents")

func checkGolden(t *testing.T, path, want string) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(got), "%s no longer matches the code: run go test ./docs -update", path)
}

func TestLifecycleDoc(t *testing.T) {
	spec := fsm.Outgoing()
	mermaid, err := spec.Diagram(fsm.Mermaid)
	require.NoError(t, err)
	var b strings.Builder
	b.WriteString("# The outgoing-call lifecycle\n\n")
	b.WriteString("<!-- Generated from fsm.Outgoing() by docs/docs_test.go; `go test ./docs -update` rewrites it. -->\n\n")
	b.WriteString("Every call is a [looplab/fsm](https://github.com/looplab/fsm) machine built from the spec\n")
	b.WriteString("`fsm.Outgoing()`. A call is created in `initiated`; entering state S emits\n")
	b.WriteString("`popin_outgoing_call_S`. Terminal states have no exits: " + joinStates(spec.TerminalStates()) + ".\n\n")
	b.WriteString("## Diagram\n\nDrawn by looplab/fsm's Mermaid visualizer (`callfsm diagram --format mermaid`;\n`--format dot` gives Graphviz).\n\n")
	b.WriteString("```mermaid\n" + mermaid + "```\n\n")
	b.WriteString("## Transitions\n\nNothing else is legal. `timeout` is fired by the engine's clock, never by callers.\n\n")
	b.WriteString(spec.Table())
	b.WriteString("\n## Timeouts\n\nEach can be changed or switched off (`fsm.Spec.WithTimeouts`, `--timeout STATE=DURATION`).\n\n")
	b.WriteString("| state | timeout | then |\n|---|---|---|\n")
	for _, st := range spec.States() {
		if d, to, ok := spec.Timeout(st); ok {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", st, d, to)
		} else if !spec.Terminal(st) {
			fmt.Fprintf(&b, "| %s | none | — |\n", st)
		}
	}
	checkGolden(t, "lifecycle.md", b.String())
}

func joinStates(states []fsm.State) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = "`" + string(st) + "`"
	}
	return strings.Join(s, ", ")
}

// seedOrder and descriptions are the seed document's, event by event.
var seedOrder = []struct {
	state fsm.State
	desc  string
}{
	{fsm.Initiated, "Triggered when the agent starts a call to the customer."},
	{fsm.Accepted, "Triggered when the customer explicitly accepts the incoming call."},
	{fsm.Started, "Triggered when the call has started successfully."},
	{fsm.Successful, "Triggered when the call ends normally after a successful connection."},
	{fsm.Missed, "Triggered when the customer does not answer within the ringing timeout."},
	{fsm.Abandoned, "Triggered when the agent cancels the call before connection."},
	{fsm.NetworkFailure, `Triggered when an ongoing call disconnects due to network failure. The participant field indicates where the network failure occurred: "user" is the customer's side, "agent" the agent's.`},
	{fsm.Declined, "Triggered when the customer actively rejects the call."},
	{fsm.Busy, "Triggered when the customer is busy on another call."},
	{fsm.CustomerUnavailable, "Triggered when the customer SDK is offline or unreachable."},
	{fsm.Ringing, "Triggered when the customer SDK begins alerting (ringing)."},
}

// examplePath is how the example payload of each event is produced: real
// inputs (and waits on a virtual clock) applied to a real engine.
var examplePath = map[fsm.State][]string{
	fsm.Initiated:           {},
	fsm.Ringing:             {"ring"},
	fsm.Accepted:            {"ring", "accept"},
	fsm.Started:             {"ring", "accept", "start"},
	fsm.Successful:          {"ring", "accept", "start", "end"},
	fsm.Missed:              {"ring", "wait"},
	fsm.Abandoned:           {"ring", "cancel"},
	fsm.NetworkFailure:      {"ring", "accept", "start", "network_failure"},
	fsm.Declined:            {"ring", "decline"},
	fsm.Busy:                {"busy"},
	fsm.CustomerUnavailable: {"unavailable"},
}

func examplePayload(t *testing.T, st fsm.State) string {
	t.Helper()
	clock := timeout.NewVirtual(time.Unix(1771832273, 0))
	rec := &emitter.Recorder{}
	eng, err := call.New(call.Config{Clock: clock, Emitter: rec, NewSessionID: func() string { return "bf0b3a76-0596-4602-a2c3-43e0db01b991" }})
	require.NoError(t, err)
	defer eng.Close()
	ctx := context.Background()
	c, err := eng.Create(ctx, call.Details{
		CallID: 28844, UserID: 58559,
		Agent: event.AgentInfo{Name: "Sasha", Email: "menonaiswarya0@gmail.com"},
		User:  event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta:  event.Meta{Product: event.Product{Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones"}},
	})
	require.NoError(t, err)
	for _, step := range examplePath[st] {
		if step == "wait" {
			d, _, _ := eng.Spec().Timeout(c.State())
			clock.Advance(d)
			continue
		}
		clock.Advance(4 * time.Second)
		_, err := c.Apply(ctx, call.Input{Trigger: fsm.Trigger(step), Participant: map[bool]event.Participant{true: event.User}[step == "network_failure"]})
		require.NoError(t, err)
	}
	require.Equal(t, st, c.State())
	evs := rec.Events()
	var buf bytes.Buffer
	enc, err := json.Marshal(evs[len(evs)-1])
	require.NoError(t, err)
	require.NoError(t, json.Indent(&buf, enc, "", "    "))
	return buf.String()
}

func TestEventsDoc(t *testing.T) {
	spec := fsm.Outgoing()
	var b strings.Builder
	b.WriteString("# Outgoing-call events\n\n")
	b.WriteString("<!-- Generated by docs/docs_test.go from fsm.Outgoing() and a real engine; `go test ./docs -update` rewrites it. -->\n\n")
	b.WriteString("The 11 events of the Popin Seller App's outgoing calls, in the seed document's order\n")
	b.WriteString("(`../shared/seed/outgoing-call-events.txt`). Every payload has the same fields in the\n")
	b.WriteString("same order: `event, session_id, user_id, call_id, schedule_id, agent{name,email},\n")
	b.WriteString("user{name,email,phone_number,country_code}, meta{product{name,id,url}}, timestamp`;\n")
	b.WriteString("`schedule_id` and `phone_number` may be null, `timestamp` is in Unix seconds, and\n")
	b.WriteString("`participant` (`user` or `agent`) appears on `network_failure` only, before `timestamp`.\n")
	b.WriteString("A timeout's event carries its deadline as timestamp.\n\n")
	b.WriteString("Each example below was emitted by the engine itself, driven on a virtual clock.\n")
	for i, s := range seedOrder {
		name := spec.EventName(s.state)
		fmt.Fprintf(&b, "\n## %d. %s\n\n%s\n\n", i+1, name, s.desc)
		b.WriteString("Fires ")
		var when []string
		if s.state == spec.Initial() {
			when = append(when, "when a call is created")
		}
		for _, tr := range spec.Transitions() {
			if tr.To != s.state {
				continue
			}
			if tr.Trigger == fsm.Timeout {
				d, _, _ := spec.Timeout(tr.From)
				w := fmt.Sprintf("from `%s` when its %s timeout elapses", tr.From, d)
				if tr.Participant != "" {
					w += fmt.Sprintf(" (participant `%s`)", tr.Participant)
				}
				when = append(when, w)
			} else {
				when = append(when, fmt.Sprintf("from `%s` on `%s`", tr.From, tr.Trigger))
			}
		}
		b.WriteString(strings.Join(when, "; ") + ".")
		if spec.Terminal(s.state) {
			b.WriteString(" Terminal: the call has ended.")
		}
		b.WriteString("\n\n```json\n" + examplePayload(t, s.state) + "\n```\n")
	}
	checkGolden(t, "events.md", b.String())
}
