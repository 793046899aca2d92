package check

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
)

const (
	I  = fsm.Initiated
	R  = fsm.Ringing
	A  = fsm.Accepted
	S  = fsm.Started
	OK = fsm.Successful
	M  = fsm.Missed
	NF = fsm.NetworkFailure
	B  = fsm.Busy
	CU = fsm.CustomerUnavailable
	AB = fsm.Abandoned
)

// at is ev as a line.
func at(id int64, st fsm.State, sec int64, opts ...func(*event.Event)) string {
	return line(ev(id, st, sec, opts...))
}

func withParticipant(p event.Participant) func(*event.Event) {
	return func(e *event.Event) { e.Participant = p }
}

// Every rule, and for each whether the event is applied: the line after
// the one that breaks a rule shows the state the call is in.
func TestRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  []string
		want []got
		msg  string // a finding's message contains it
		cfg  Config
		// end keeps the findings of the end of input (incomplete), which
		// other cases leave out.
		end bool
	}{
		{
			name: "legal call",
			log:  call(1, I, R, A, S, OK),
			want: []got{},
		},
		{
			name: "malformed: not JSON, not applied",
			log:  []string{`{"event":"popin_outgoing_call_initiated",`, at(1, R, 0)},
			want: []got{{1, RuleMalformed}, {2, RuleNoInitiated}},
			msg:  "not a JSON object: unexpected end of JSON input",
		},
		{
			name: "malformed: not an object",
			log:  []string{`["a"]`, `42`, `"x"`},
			want: []got{{1, RuleMalformed}, {2, RuleMalformed}, {3, RuleMalformed}},
		},
		{
			name: "malformed: call_id a string, not applied",
			log:  []string{strings.Replace(at(1, I, 0), `"call_id":1`, `"call_id":"1"`, 1), at(1, R, 1)},
			want: []got{{1, RuleMalformed}, {2, RuleNoInitiated}},
			msg:  `field "call_id": want int64, got JSON string`,
		},
		{
			name: "malformed: fractional timestamp",
			log:  []string{strings.Replace(at(1, I, 0), `"timestamp":1771832273`, `"timestamp":1771832273.5`, 1)},
			want: []got{{1, RuleMalformed}},
			msg:  "want int64, got JSON number 1771832273.5",
		},
		{
			name: "malformed: event not a string",
			log:  []string{strings.Replace(at(1, I, 0), `"event":"popin_outgoing_call_initiated"`, `"event":7`, 1)},
			want: []got{{1, RuleMalformed}},
		},
		{
			name: "malformed: line too long, skipped",
			log:  []string{at(1, I, 0), `{"x":"` + strings.Repeat("a", 600) + `"}`, at(1, R, 1)},
			cfg:  Config{MaxLineBytes: 512},
			want: []got{{2, RuleMalformed}},
			msg:  "line of 608 bytes is longer than the 512 allowed",
		},
		{
			name: "missing-field, not applied",
			log:  []string{strings.Replace(at(1, I, 0), `"session_id":"session-1",`, ``, 1), at(1, R, 1)},
			want: []got{{1, RuleMissingField}, {2, RuleNoInitiated}},
			msg:  `field "session_id" is missing`,
		},
		{
			name: "missing-field: null counts as absent",
			log:  []string{strings.Replace(at(1, I, 0), `"user_id":58559`, `"user_id":null`, 1)},
			want: []got{{1, RuleMissingField}},
		},
		{
			name: "unknown-event, not applied",
			log:  []string{at(1, I, 0), strings.Replace(at(1, R, 1), "ringing", "exploded", 1), at(1, R, 2)},
			want: []got{{2, RuleUnknownEvent}},
			msg:  `"popin_outgoing_call_exploded" is not an event of lifecycle "popin-outgoing-call"`,
		},
		{
			name: "duplicate, not applied",
			log:  []string{at(1, I, 0), at(1, R, 1), at(1, R, 1), at(1, A, 2)},
			want: []got{{3, RuleDuplicate}},
		},
		{
			name: "duplicate: same object, members reordered and spaced",
			log: []string{at(1, I, 0),
				`{ "timestamp": 1771832273, "call_id": 1, "event": "popin_outgoing_call_initiated", "session_id": "session-1", "user_id": 58559,` +
					` "schedule_id": null, "agent": {"name": "Sasha", "email": "menonaiswarya0@gmail.com"},` +
					` "user": {"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},` +
					` "meta": {"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}} }`,
				at(1, R, 1)},
			want: []got{{2, RuleDuplicate}},
		},
		{
			name: "duplicate: an unknown extra field makes another object",
			log:  []string{at(1, I, 0), strings.Replace(at(1, I, 0), `{`, `{"retry":1,`, 1)},
			want: []got{{2, RuleIllegalTransition}},
		},
		{
			name: "duplicate of an ended call's event is not after-terminal",
			log:  []string{at(1, I, 0), at(1, B, 1), at(1, B, 1)},
			want: []got{{3, RuleDuplicate}},
		},
		{
			name: "no-initiated, applied: the call starts in ringing",
			log:  []string{at(1, R, 0), at(1, A, 1)},
			want: []got{{1, RuleNoInitiated}},
			msg:  "the call's first event is popin_outgoing_call_ringing, not popin_outgoing_call_initiated",
		},
		{
			name: "no-initiated into a terminal state: the call has ended",
			log:  []string{at(1, OK, 0), at(1, I, 1)},
			want: []got{{1, RuleNoInitiated}, {2, RuleAfterTerminal}},
		},
		{
			name: "after-terminal, not applied: the call stays ended",
			log:  []string{at(1, I, 0), at(1, B, 1), at(1, R, 2), at(1, I, 3), at(1, R, 2)},
			want: []got{{3, RuleAfterTerminal}, {4, RuleAfterTerminal}, {5, RuleDuplicate}},
			msg:  "the call already ended as popin_outgoing_call_busy: no event may follow",
		},
		{
			name: "illegal-transition, applied: one missing event, one finding",
			log:  []string{at(1, I, 0), at(1, A, 1), at(1, S, 2), at(1, OK, 3)},
			want: []got{{2, RuleIllegalTransition}},
			msg: "popin_outgoing_call_accepted cannot follow initiated; expected popin_outgoing_call_ringing, " +
				"popin_outgoing_call_abandoned, popin_outgoing_call_busy or popin_outgoing_call_customer_unavailable",
		},
		{
			name: "illegal-transition: initiated again on a live call",
			log:  []string{at(1, I, 0), at(1, R, 1), at(1, I, 2), at(1, R, 3)},
			want: []got{{3, RuleIllegalTransition}},
		},
		{
			name: "time-backwards, applied",
			log:  []string{at(1, I, 5), at(1, R, 3), at(1, A, 4), at(1, S, 6)},
			want: []got{{2, RuleTimeBackwards}, {3, RuleTimeBackwards}},
			msg:  "timestamp 1771832276 is 2 s earlier than the call's latest, 1771832278",
		},
		{
			name: "early-timeout, applied",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, M, 28), at(1, R, 29)},
			want: []got{{3, RuleEarlyTimeout}, {4, RuleAfterTerminal}},
			msg:  "only ringing's 30s timeout leads to missed: due at 1771832303 (entered at 1771832273), it came 2s early",
		},
		{
			name: "early-timeout: 1 s of slack",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, M, 29)},
			want: []got{},
		},
		{
			name: "early-timeout: not when another trigger also leads there",
			log:  append(call(1, I, CU), at(2, I, 0), at(2, R, 1), at(2, A, 2), at(2, NF, 3)),
			want: []got{},
		},
		{
			name: "early-timeout: the timeout is switched off",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, M, 40)},
			cfg:  Config{Spec: mustTimeouts(t, map[fsm.State]time.Duration{R: 0})},
			want: []got{{3, RuleEarlyTimeout}},
			msg:  "only ringing's timeout leads to missed, and it is switched off",
		},
		{
			name: "early-timeout: a custom timeout",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, M, 30)},
			cfg:  Config{Spec: mustTimeouts(t, map[fsm.State]time.Duration{R: 45 * time.Second})},
			want: []got{{3, RuleEarlyTimeout}},
		},
		{
			name: "overdue, applied",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, A, 32), at(1, S, 33)},
			want: []got{{3, RuleOverdue}},
			msg:  "left ringing 2s after its 30s timeout was due at 1771832303 (entered at 1771832273): the timeout should have ended it as popin_outgoing_call_missed first",
		},
		{
			name: "overdue: 1 s of slack, and none for the timeout's own event",
			log:  append([]string{at(1, I, 0), at(1, R, 0), at(1, A, 31)}, at(2, I, 0), at(2, R, 0), at(2, M, 50)),
			want: []got{},
		},
		{
			name: "overdue: none when the timeout is switched off",
			log:  []string{at(1, I, 0), at(1, R, 0), at(1, A, 300)},
			cfg:  Config{Spec: mustTimeouts(t, map[fsm.State]time.Duration{R: 0})},
			end:  true,
			want: []got{{3, RuleIncomplete}},
		},
		{
			name: "overdue at the end of input, at the call's last line",
			log:  []string{at(1, I, 0), at(1, R, 0), at(2, I, 10), at(2, B, 40)},
			end:  true,
			want: []got{{2, RuleOverdue}},
			msg:  "still in ringing at the end of input, which goes on to 1771832313: its 30s timeout was due at 1771832303",
		},
		{
			name: "incomplete: a timed state not yet due, with 1 s of slack",
			log:  []string{at(1, I, 0), at(1, R, 0), at(2, I, 10), at(2, B, 31)},
			end:  true,
			want: []got{{2, RuleIncomplete}},
			msg:  "has not ended: still in ringing since 1771832273 at the end of input",
		},
		{
			name: "incomplete: started has no timeout",
			log:  append(call(1, I, R, A, S), at(2, I, 1000), at(2, B, 1000)),
			end:  true,
			want: []got{{4, RuleIncomplete}},
		},
		{
			name: "identity-mismatch, applied",
			log: []string{at(1, I, 0), at(1, R, 1, func(e *event.Event) {
				e.SessionID, e.UserID, e.Agent.Name = "other", 7, "Ravi"
				sched := int64(3)
				e.ScheduleID = &sched
			}), at(1, A, 2)},
			want: []got{{2, RuleIdentityMismatch}},
			msg:  `differs from the call's first event (log:1): session_id "other" (first "session-1"), user_id 7 (first 58559), schedule_id, agent`,
		},
		{
			name: "identity-mismatch: absent and null are the same",
			log:  []string{at(1, I, 0), strings.Replace(at(1, R, 1), `"schedule_id":null,`, ``, 1)},
			want: []got{},
		},
		{
			name: "identity-mismatch: user and meta",
			log: []string{at(1, I, 0), at(1, R, 1, func(e *event.Event) {
				e.User.CountryCode, e.Meta.Product.ID = "+1", "SKU-9"
			})},
			want: []got{{2, RuleIdentityMismatch}},
			msg:  "(log:1): user, meta",
		},
		{
			name: "bad-participant: none on network_failure, applied",
			log:  append(call(1, I, R, A), at(1, NF, 3, withParticipant("")), at(1, R, 4)),
			want: []got{{4, RuleBadParticipant}, {5, RuleAfterTerminal}},
			msg:  `popin_outgoing_call_network_failure needs participant "user" or "agent"; it has none`,
		},
		{
			name: "bad-participant: another value",
			log:  append(call(1, I, R, A), at(1, NF, 3, withParticipant("both"))),
			want: []got{{4, RuleBadParticipant}},
			msg:  `participant must be "user" or "agent", not "both"`,
		},
		{
			name: "bad-participant: on another event",
			log:  []string{at(1, I, 0, withParticipant(event.Agent))},
			end:  true,
			want: []got{{1, RuleBadParticipant}, {1, RuleIncomplete}},
			msg:  `participant "agent" is only allowed on popin_outgoing_call_network_failure`,
		},
		{
			name: "several findings on one line",
			log:  []string{at(1, I, 0), at(1, S, 40, func(e *event.Event) { e.UserID = 1 })},
			end:  true,
			want: []got{{2, RuleIllegalTransition}, {2, RuleOverdue}, {2, RuleIdentityMismatch}, {2, RuleIncomplete}},
		},
		{
			name: "findings in input order, end of input ones merged",
			log:  []string{at(1, I, 0), at(2, I, 1), `x`, at(2, OK, 2), at(3, I, 3)},
			end:  true,
			want: []got{{1, RuleIncomplete}, {3, RuleMalformed}, {4, RuleIllegalTransition}, {5, RuleIncomplete}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := run(t, tt.cfg, "log", lines(tt.log...))
			found := reduce(rep.Findings)
			if !tt.end {
				found = slices.DeleteFunc(found, func(g got) bool { return g.Rule == RuleIncomplete })
			}
			assert.Equal(t, tt.want, found)
			if tt.msg != "" {
				var msgs []string
				for _, f := range rep.Findings {
					msgs = append(msgs, f.Message)
				}
				assert.Contains(t, strings.Join(msgs, "\n"), tt.msg)
			}
			errs, warns := 0, 0
			for _, f := range rep.Findings {
				assert.Equal(t, f.Rule.Severity(), f.Severity)
				if f.Severity == SeverityError {
					errs++
				} else {
					warns++
				}
			}
			assert.Equal(t, errs, rep.Errors)
			assert.Equal(t, warns, rep.Warnings)
		})
	}
}

func mustTimeouts(t *testing.T, timeouts map[fsm.State]time.Duration) *fsm.Spec {
	t.Helper()
	spec, err := fsm.Outgoing().WithTimeouts(timeouts)
	require.NoError(t, err)
	return spec
}

func TestFindingFields(t *testing.T) {
	t.Parallel()
	rep := check(t, lines(at(7, I, 0), `{"event":"popin_outgoing_call_ringing","call_id":7}`, `nope`, at(7, A, 1)))
	require.Len(t, rep.Findings, 4)
	assert.Equal(t, Finding{File: "log", Line: 2, CallID: 7, Event: "popin_outgoing_call_ringing", Rule: RuleMissingField,
		Severity: SeverityError, Message: `field "session_id" is missing`}, rep.Findings[0])
	assert.Equal(t, "log:2: call 7: missing-field: field \"session_id\" is missing", rep.Findings[0].String())
	assert.Equal(t, "log:3: call ?: malformed: not a JSON object: invalid character 'n' at byte 0", rep.Findings[1].String())
	assert.Equal(t, Finding{File: "log", Line: 4, CallID: 7, Event: "popin_outgoing_call_accepted", Rule: RuleIllegalTransition,
		Severity: SeverityError, Message: "popin_outgoing_call_accepted cannot follow initiated; expected popin_outgoing_call_ringing, " +
			"popin_outgoing_call_abandoned, popin_outgoing_call_busy or popin_outgoing_call_customer_unavailable"}, rep.Findings[2])
	assert.Equal(t, RuleIncomplete, rep.Findings[3].Rule)
	assert.Equal(t, SeverityWarning, rep.Findings[3].Severity)
}

func TestReportCounts(t *testing.T) {
	t.Parallel()
	log := lines(append(append(append(call(1, I, R, A, S, OK), call(2, I, R, M)...), call(3, I, R)...), "", "  \t", `{}`)...)
	rep := check(t, log)
	assert.Equal(t, []string{"log"}, rep.Files)
	assert.Equal(t, 11, rep.Lines, "blank lines are not counted")
	assert.Equal(t, 10, rep.Events)
	assert.Equal(t, 3, rep.Calls)
	assert.Equal(t, 1, rep.Incomplete)
	assert.Equal(t, map[string]int{"successful": 1, "missed": 1, "abandoned": 0, "network_failure": 0, "declined": 0, "busy": 0,
		"customer_unavailable": 0}, rep.Outcomes)
	assert.Equal(t, map[Rule]int{RuleMissingField: 1, RuleIncomplete: 1, RuleEarlyTimeout: 1}, rep.Rules)
	assert.Equal(t, 2, rep.Errors)
	assert.Equal(t, 1, rep.Warnings)
	assert.Equal(t, Durations{Calls: 2, P50: 1, P90: 1, P99: 1, Max: 1}, rep.TimeInState["ringing"], "the call still ringing is not counted")
	assert.Equal(t, Durations{Calls: 1, P50: 1, P90: 1, P99: 1, Max: 1}, rep.TimeInState["started"])
	assert.NotContains(t, rep.TimeInState, "successful")
}

func TestMaxFindingsAndOnFinding(t *testing.T) {
	t.Parallel()
	log := lines(`a`, `b`, `c`, at(1, I, 0))
	rep := run(t, Config{MaxFindings: 2}, "log", log)
	assert.Equal(t, []got{{1, RuleMalformed}, {2, RuleMalformed}}, reduce(rep.Findings))
	assert.Equal(t, 2, rep.Unlisted)
	assert.Equal(t, 3, rep.Errors)
	assert.Equal(t, 1, rep.Warnings)

	var streamed []Finding
	rep = run(t, Config{OnFinding: func(f Finding) { streamed = append(streamed, f) }}, "log", log)
	assert.Empty(t, rep.Findings)
	assert.Equal(t, []got{{1, RuleMalformed}, {2, RuleMalformed}, {3, RuleMalformed}, {4, RuleIncomplete}}, reduce(streamed))
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{MaxFindings: -1}, {MaxLineBytes: -1}, {Workers: -1}} {
		_, err := New(cfg)
		assert.ErrorIs(t, err, ErrConfig)
	}
}

func TestDurationsPercentiles(t *testing.T) {
	t.Parallel()
	var h hist
	for v := int64(1); v <= 100; v++ {
		h.add(v)
	}
	h.add(5000)
	assert.Equal(t, Durations{Calls: 101, P50: 51, P90: 91, P99: 100, Max: 5000}, h.summary())
	var one hist
	one.add(7)
	assert.Equal(t, Durations{Calls: 1, P50: 7, P90: 7, P99: 7, Max: 7}, one.summary())
}
