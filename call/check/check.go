// Package check replays event logs against a lifecycle and reports every
// event that breaks it: the library behind `callfsm check`.
//
// A log is JSON Lines of the seed's payloads (call/event), as webhooks, the
// engine or another system wrote them. Several inputs are one stream, in
// order (rotated logs): a call may start in one and end in the next. Events
// are applied per call_id in input order to a model of each call driven by
// the same fsm.Spec as the engine, so a custom spec checks custom logs.
//
// Every finding names a rule with a stable id (see Rules) and a severity.
// Findings of one line come out in input order; those about calls left open
// at the end of input (overdue, incomplete) come after, at the call's last
// line.
//
// The checker is built for logs of any size: lines are split and decoded by
// a hand-written scanner (event.Raw) on every core, then applied in order by
// one goroutine; memory follows live calls, since an ended call keeps only a
// tombstone (its terminal state and a 64-bit hash per line, for the
// duplicate rule).
package check

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"strconv"

	"github.com/callfsm/callfsm/fsm"
)

// Rule is the stable id of a check.
type Rule string

// The rules, in the order the documentation lists them.
const (
	// RuleMalformed: not a JSON object, too long, or a field of the wrong
	// type. The line is not applied.
	RuleMalformed Rule = "malformed"
	// RuleMissingField: event, session_id, user_id, call_id or timestamp
	// is absent (or null). Not applied.
	RuleMissingField Rule = "missing-field"
	// RuleUnknownEvent: the event name is not one of the spec's. Not
	// applied.
	RuleUnknownEvent Rule = "unknown-event"
	// RuleDuplicate (warning): the line is the same JSON object as an
	// event already seen for its call, a redelivery. Not applied.
	RuleDuplicate Rule = "duplicate"
	// RuleNoInitiated: a call's first event is not the initial state's.
	// Applied: the call starts in that event's state.
	RuleNoInitiated Rule = "no-initiated"
	// RuleAfterTerminal: an event for a call that has ended. Not applied.
	RuleAfterTerminal Rule = "after-terminal"
	// RuleIllegalTransition: the event's state is not a legal successor of
	// the call's. Applied: the call moves to it (resync).
	RuleIllegalTransition Rule = "illegal-transition"
	// RuleTimeBackwards: a timestamp earlier than the latest one of the
	// call. Applied.
	RuleTimeBackwards Rule = "time-backwards"
	// RuleEarlyTimeout: a state reached only by a timeout came before the
	// timeout was due (1 s of slack). Applied.
	RuleEarlyTimeout Rule = "early-timeout"
	// RuleOverdue: the call left a timed state later than its timeout was
	// due (1 s of slack), by any event but the timeout's own; or, at the
	// end of input, it is still in a timed state whose deadline is over.
	// Applied.
	RuleOverdue Rule = "overdue"
	// RuleIdentityMismatch: session_id, user_id, schedule_id, agent, user
	// or meta differ from the call's first event. Applied.
	RuleIdentityMismatch Rule = "identity-mismatch"
	// RuleBadParticipant: a participant-state event (network_failure)
	// without participant "user" or "agent", or a participant on another
	// event. Applied.
	RuleBadParticipant Rule = "bad-participant"
	// RuleIncomplete (warning): at the end of input, a call that has not
	// ended and is not overdue.
	RuleIncomplete Rule = "incomplete"
)

// Rules returns every rule, in the order the documentation lists them.
func Rules() []Rule {
	return []Rule{
		RuleMalformed, RuleMissingField, RuleUnknownEvent, RuleDuplicate, RuleNoInitiated,
		RuleAfterTerminal, RuleIllegalTransition, RuleTimeBackwards, RuleEarlyTimeout,
		RuleOverdue, RuleIdentityMismatch, RuleBadParticipant, RuleIncomplete,
	}
}

// Severity is how bad a finding is.
type Severity string

// The severities. Errors fail a check; warnings fail it only in strict mode.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Severity returns the rule's severity: warning for duplicate and
// incomplete, error for the others.
func (r Rule) Severity() Severity {
	if r == RuleDuplicate || r == RuleIncomplete {
		return SeverityWarning
	}
	return SeverityError
}

// Finding is one broken rule at one line.
type Finding struct {
	File     string   `json:"file"`    // the Input's name
	Line     int      `json:"line"`    // from 1 in each input
	CallID   int64    `json:"call_id"` // 0 when the line has none
	Event    string   `json:"event"`   // the line's event name, "" if none
	Rule     Rule     `json:"rule"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"` // what was wrong, and what was expected
}

// String formats f as `FILE:LINE: call CALL_ID: RULE: message`. A line
// whose call_id could not be read shows "call ?".
func (f Finding) String() string {
	id := strconv.FormatInt(f.CallID, 10)
	if f.CallID == 0 && (f.Rule == RuleMalformed || f.Rule == RuleMissingField) {
		id = "?"
	}
	return fmt.Sprintf("%s:%d: call %s: %s: %s", f.File, f.Line, id, f.Rule, f.Message)
}

// Input is one log: its raw bytes, and the name findings give it. Inputs
// are read once, sequentially; decompress them before (the CLI does .gz).
type Input struct {
	Name string
	R    io.Reader
}

// DefaultMaxLineBytes is the longest line checked by default: longer ones
// are malformed, and skipped without being held in memory whole.
const DefaultMaxLineBytes = 1 << 20

// Config configures a Checker. The zero value checks the Popin lifecycle
// with its default timeouts and lists every finding.
type Config struct {
	// Spec is the lifecycle; nil means fsm.Outgoing(). Its timeouts are the
	// ones the time rules use (fsm.Spec.WithTimeouts changes them).
	Spec *fsm.Spec
	// MaxFindings stops listing findings after that many; counting goes
	// on (Report.Unlisted). Zero lists them all.
	MaxFindings int
	// MaxLineBytes is the longest line, its end (LF or CRLF) excluded;
	// zero means DefaultMaxLineBytes.
	MaxLineBytes int
	// Workers is how many goroutines decode lines; zero means
	// runtime.GOMAXPROCS(0).
	Workers int
	// OnFinding, when set, receives each listed finding as it is found,
	// on the goroutine that called Check: those of each line in input
	// order, then those of the end of input by position. Report.Findings
	// is then left empty, so that memory does not grow with findings.
	OnFinding func(Finding)
	// OnProgress, when set, is called on Check's goroutine after each
	// batch of lines (about a megabyte) has been checked.
	OnProgress func(Progress)
}

// Progress says how far a Check has got.
type Progress struct {
	Lines  int64 // non-blank lines checked
	Events int64 // lines that decoded as events
}

// Report is the outcome of a Check. Its JSON form is `callfsm check
// --format json`.
type Report struct {
	Files    []string `json:"files"`    // the inputs' names, in order
	Lines    int      `json:"lines"`    // non-blank lines
	Events   int      `json:"events"`   // lines that decoded as events (malformed and missing-field are not)
	Calls    int      `json:"calls"`    // distinct call_ids with at least one event applied
	Errors   int      `json:"errors"`   // error findings, listed or not
	Warnings int      `json:"warnings"` // warning findings, listed or not
	// Outcomes counts the calls that ended, per terminal state, every
	// terminal state of the spec included.
	Outcomes map[string]int `json:"outcomes"`
	// Incomplete counts the calls still live at the end of input and not
	// overdue (the incomplete findings).
	Incomplete int `json:"incomplete"`
	// Rules counts the findings per rule, listed or not.
	Rules map[Rule]int `json:"rules"`
	// TimeInState gives, per live state, how long calls stayed in it
	// before a legal transition: ring time is ringing's, talk time
	// started's.
	TimeInState map[string]Durations `json:"time_in_state"`
	// Unlisted counts the findings past Config.MaxFindings.
	Unlisted int `json:"unlisted"`
	// Findings lists the findings in input order (those of the end of
	// input at their call's last line), up to Config.MaxFindings; empty
	// when Config.OnFinding took them.
	Findings []Finding `json:"findings"`
}

// Durations summarises the times calls spent in one state, in whole seconds
// (nearest-rank percentiles).
type Durations struct {
	Calls int   `json:"calls"`
	P50   int64 `json:"p50"`
	P90   int64 `json:"p90"`
	P99   int64 `json:"p99"`
	Max   int64 `json:"max"`
}

// Checker checks logs against one lifecycle. It is immutable and safe for
// concurrent use: each Check has its own state.
type Checker struct {
	cfg     Config
	tab     *table
	seed    maphash.Seed
	workers int
	// bufSize is the size of a read buffer: it holds at least one longest
	// line with its CRLF, so that a line with no end in a full buffer is
	// too long.
	bufSize int
}

// ErrConfig is the kind of the errors New returns.
var ErrConfig = errors.New("check: invalid config")

// New returns a Checker for cfg, or an error (ErrConfig) naming the bad
// field.
func New(cfg Config) (*Checker, error) {
	if cfg.Spec == nil {
		cfg.Spec = fsm.Outgoing()
	}
	switch {
	case cfg.MaxFindings < 0:
		return nil, fmt.Errorf("%w: MaxFindings is negative", ErrConfig)
	case cfg.MaxLineBytes < 0:
		return nil, fmt.Errorf("%w: MaxLineBytes is negative", ErrConfig)
	case cfg.Workers < 0:
		return nil, fmt.Errorf("%w: Workers is negative", ErrConfig)
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	tab, err := compile(cfg.Spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c := &Checker{cfg: cfg, tab: tab, seed: maphash.MakeSeed(), workers: cfg.Workers}
	if c.workers == 0 {
		c.workers = runtime.GOMAXPROCS(0)
	}
	c.bufSize = cfg.MaxLineBytes + 2 + 256<<10
	return c, nil
}

// Spec returns the lifecycle the checker checks against.
func (c *Checker) Spec() *fsm.Spec { return c.cfg.Spec }

// Check reads the inputs, one stream in the order given, and returns what
// it found. It fails only when an input cannot be read or ctx ends; broken
// lines are findings, not errors. Check returns when every goroutine it
// started has ended; cancelling ctx takes effect between reads, so a Read
// that blocks keeps it waiting.
func (c *Checker) Check(ctx context.Context, inputs ...Input) (*Report, error) {
	st := newState(c, inputs)
	if err := c.pipeline(ctx, inputs, st.consume); err != nil {
		return nil, err
	}
	st.finish()
	return st.report, nil
}
