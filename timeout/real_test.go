package timeout_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/callfsm/callfsm/timeout"
)

// Inside a synctest bubble time is fake: time.Sleep returns as soon as every
// goroutine in the bubble is blocked, with the clock moved exactly by the
// duration slept. No real waiting happens.

func TestRealAfterFuncFiresAtDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		d        time.Duration
		wantLate time.Duration // when it fires, from the arming instant
	}{
		{name: "positive delay", d: 3 * time.Second, wantLate: 3 * time.Second},
		{name: "long delay", d: 90 * time.Minute, wantLate: 90 * time.Minute},
		{name: "zero delay", d: 0, wantLate: 0},
		{name: "negative delay", d: -time.Second, wantLate: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var clock timeout.Clock = timeout.Real{}
				start := clock.Now()
				firedAt := make(chan time.Time, 1)
				clock.AfterFunc(tt.d, func() { firedAt <- time.Now() })

				if tt.wantLate > 0 {
					time.Sleep(tt.wantLate - time.Nanosecond)
					synctest.Wait()
					assert.Empty(t, firedAt, "fired before the deadline")
				}

				got := <-firedAt
				assert.Equal(t, tt.wantLate, got.Sub(start))
			})
		})
	}
}

func TestRealStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stopAfter time.Duration // Stop is called this long after arming
		wantStop  bool
		wantFired bool
	}{
		{name: "stop before deadline", stopAfter: time.Second, wantStop: true, wantFired: false},
		{name: "stop at once", stopAfter: 0, wantStop: true, wantFired: false},
		{name: "stop after firing", stopAfter: 3 * time.Second, wantStop: false, wantFired: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var fired atomic.Int32
				timer := timeout.Real{}.AfterFunc(2*time.Second, func() { fired.Add(1) })

				time.Sleep(tt.stopAfter)
				synctest.Wait()
				gotStop := timer.Stop()
				time.Sleep(time.Hour)
				synctest.Wait()

				assert.Equal(t, tt.wantStop, gotStop, "first Stop")
				assert.False(t, timer.Stop(), "second Stop")
				assert.Equal(t, tt.wantFired, fired.Load() == 1, "fired")
				assert.LessOrEqual(t, fired.Load(), int32(1), "fired more than once")
			})
		})
	}
}

func TestRealNowIsTimeNow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		assert.True(t, timeout.Real{}.Now().Equal(time.Now()), "Real.Now inside a bubble")
		time.Sleep(time.Minute)
		assert.True(t, timeout.Real{}.Now().Equal(time.Now()), "Real.Now after fake time moved")
	})
}

func TestRealReturnsTheTimeTimer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		timer := timeout.Real{}.AfterFunc(time.Second, func() {})
		_, ok := timer.(*time.Timer)
		assert.True(t, ok, "Real.AfterFunc returns %T, want *time.Timer", timer)
		timer.Stop()
	})
}
