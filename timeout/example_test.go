package timeout_test

import (
	"fmt"
	"time"

	"github.com/callfsm/callfsm/timeout"
)

// Three timers armed out of order fire in deadline order, each seeing the
// clock at its own deadline.
func ExampleVirtual() {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v := timeout.NewVirtual(start)
	for _, d := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second} {
		v.AfterFunc(d, func() {
			fmt.Println("timer of", d, "fired at", v.Now().Format(time.TimeOnly))
		})
	}

	n := v.Advance(5 * time.Second)
	fmt.Println(n, "fired; now", v.Now().Format(time.TimeOnly))
	// Output:
	// timer of 1s fired at 12:00:01
	// timer of 2s fired at 12:00:02
	// timer of 3s fired at 12:00:03
	// 3 fired; now 12:00:05
}

// Step runs a simulation as fast as the CPU allows: each call jumps straight
// to the next deadline. Here a call rings, is answered after 5 s, and its ring
// timeout of 30 s is stopped.
func ExampleVirtual_Step() {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v := timeout.NewVirtual(start)
	elapsed := func() time.Duration { return v.Now().Sub(start) }

	ringTimeout := v.AfterFunc(30*time.Second, func() { fmt.Println(elapsed(), "no answer") })
	v.AfterFunc(5*time.Second, func() {
		fmt.Println(elapsed(), "answered; ring timeout stopped:", ringTimeout.Stop())
		v.AfterFunc(2*time.Minute, func() { fmt.Println(elapsed(), "hung up") })
	})

	for v.Step() {
	}
	fmt.Println("armed:", v.Len())
	// Output:
	// 5s answered; ring timeout stopped: true
	// 2m5s hung up
	// armed: 0
}

// Code that takes a Clock runs on the real clock in production and on a
// virtual one in simulation.
func ExampleClock() {
	ring := func(clock timeout.Clock, done chan<- string) timeout.Timer {
		return clock.AfterFunc(30*time.Second, func() { done <- "ring timeout" })
	}

	v := timeout.NewVirtual(time.Time{})
	done := make(chan string, 1)
	ring(v, done)
	v.Advance(time.Minute)
	fmt.Println(<-done)

	t := ring(timeout.Real{}, done)
	fmt.Println("stopped:", t.Stop())
	// Output:
	// ring timeout
	// stopped: true
}
