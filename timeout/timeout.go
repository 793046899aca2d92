// Package timeout knows time: a small Clock interface the engine takes, the
// clock of the operating system (Real) and a manual clock (Virtual) for
// simulations and tests.
//
// A Virtual clock moves only when told to. Advancing it fires every timer that
// falls due, in deadline order and deterministically, in the goroutine that
// advances it, without sleeping; a million armed timers take about 50 MB.
//
// For tests of code that runs on the real clock, prefer testing/synctest:
// inside a synctest bubble, Real{} runs on the bubble's fake time.
package timeout

import "time"

// Clock tells the time and schedules functions to run later.
type Clock interface {
	// Now returns the current time of the clock.
	Now() time.Time
	// AfterFunc calls f once, in its own goroutine (real clock) or in the
	// goroutine advancing the clock (virtual), after d has elapsed.
	// d <= 0 means as soon as possible.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a function scheduled by a Clock.
type Timer interface {
	// Stop prevents the timer from firing. It returns true if the call stops
	// the timer, false if it already fired or was stopped.
	Stop() bool
	// Reset re-arms the timer to call its function after d, whether it was
	// armed, stopped or had already fired. It returns true if the timer was
	// armed. A function already started by an earlier expiry may still be
	// running or about to run: callers must make their function check that
	// it is not stale (see call.Call).
	Reset(d time.Duration) bool
}

// Real is the clock of the operating system: time.Now and time.AfterFunc.
// Its zero value is ready to use and costs nothing: timeout.Real{}.
type Real struct{}

// Compile-time checks that both clocks satisfy Clock.
var (
	_ Clock = Real{}
	_ Clock = (*Virtual)(nil)
)

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc calls time.AfterFunc(d, f) and returns its *time.Timer, which is
// the Timer (no wrapper is allocated). f runs in its own goroutine.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
