// Package emittertest checks that an [emitter.Emitter] obeys the contract
// its documentation states, in the manner of testing/slogtest: a sink's
// author calls [Run] from a test and learns what the sink gets wrong.
package emittertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"testing"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

// Harness is a sink under test and a way to see what reached its
// destination.
type Harness struct {
	// Sink is the Emitter under test.
	Sink emitter.Emitter

	// Events returns every event the sink's destination has received so
	// far, in the order received. Run calls it only after the Emits have
	// returned and, if Sink is an emitter.Flusher, after Flush (or after
	// Close), so it must reflect every accepted event by then. For a sink
	// that writes bytes, decode them.
	Events func() []event.Event
}

// Run checks, each in a subtest with a sink newly made by newSink:
//
//   - Order: events emitted from one goroutine arrive, equal and in order.
//   - Concurrent: Emit from many goroutines at once loses and duplicates
//     nothing, and keeps each goroutine's order (run it with -race).
//   - Flush: if Sink is an emitter.Flusher, Flush makes every event emitted
//     before it visible, and repeated Flushes are harmless.
//   - Close: if Sink is an io.Closer, Close makes every accepted event
//     visible, a second Close returns nil like the first, and Emit (and
//     Flush) after Close return errors that are errors.Is emitter.ErrClosed.
//   - CloseDuringEmit: Close, called twice at once while goroutines emit,
//     lets every Emit either succeed, and then the event arrives, or fail
//     with emitter.ErrClosed, and then it does not; every Emit begun after a
//     Close has returned fails.
//   - CancelledContext: Emit with a cancelled context either accepts the
//     event (it then arrives) or returns an error that is errors.Is
//     context.Canceled, and the sink still works afterwards.
//
// The sink must accept every event with a live context, so a bounded sink
// needs room: Run emits at most 2,000 events between two Flushes.
//
// If a sink is an io.Closer, Run closes it when each subtest ends and
// reports an error from that Close; newSink may register further cleanup
// with t.Cleanup, which runs after it.
func Run(t *testing.T, newSink func(t *testing.T) Harness) {
	t.Helper()
	for _, c := range checks() {
		t.Run(c.name, func(t *testing.T) {
			h := newSink(t)
			if h.Sink == nil || h.Events == nil {
				t.Fatal("emittertest: newSink returned a Harness without Sink or Events")
			}
			if cl, ok := h.Sink.(io.Closer); ok {
				t.Cleanup(func() {
					if err := cl.Close(); err != nil {
						t.Errorf("Close at the end of the test: %v", err)
					}
				})
			}
			c.fn(t, h)
		})
	}
}

// check is one property of the contract.
type check struct {
	name string
	fn   func(t testing.TB, h Harness)
}

func checks() []check {
	return []check{
		{"Order", checkOrder},
		{"Concurrent", checkConcurrent},
		{"Flush", checkFlush},
		{"Close", checkClose},
		{"CloseDuringEmit", checkCloseDuringEmit},
		{"CancelledContext", checkCancelledContext},
	}
}

// testEvent returns a distinct, valid event: UserID names the emitting
// goroutine and CallID the event's rank within it. The fields vary so that
// sinks which encode events meet nulls, escapes and the optional
// participant.
func testEvent(g, i int) event.Event {
	ev := event.Event{
		Event:     "popin_outgoing_call_initiated",
		SessionID: fmt.Sprintf("session-%d-%d", g, i),
		UserID:    int64(g),
		CallID:    int64(i),
		Agent:     event.AgentInfo{Name: "Sasha", Email: "sasha@example.com"},
		User:      event.UserInfo{Name: `Demo "Vishal" <&> é`, Email: "demo@example.com", CountryCode: "+91"},
		Meta: event.Meta{Product: event.Product{
			Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones?a=1&b=2",
		}},
		Timestamp: 1771832273 + int64(i),
	}
	if i%3 == 0 {
		s := int64(1000 + i)
		ev.ScheduleID = &s
	}
	if i%4 == 1 {
		p := "+91 98765 43210"
		ev.User.PhoneNumber = &p
	}
	if i%5 == 2 {
		ev.Event = "popin_outgoing_call_network_failure"
		ev.Participant = event.Agent
	}
	return ev
}

// settle flushes the sink if it can be flushed and returns what arrived.
func settle(t testing.TB, h Harness) []event.Event {
	t.Helper()
	if f, ok := h.Sink.(emitter.Flusher); ok {
		if err := f.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	return h.Events()
}

// emitAll emits events (g, from) … (g, to-1) and returns them; any error
// is fatal.
func emitAll(t testing.TB, h Harness, g, from, to int) []event.Event {
	t.Helper()
	var sent []event.Event
	for i := from; i < to; i++ {
		ev := testEvent(g, i)
		if err := h.Sink.Emit(context.Background(), ev); err != nil {
			t.Fatalf("Emit(event %d) = %v, want nil", i, err)
		}
		sent = append(sent, ev)
	}
	return sent
}

// sameEvents reports the differences between got and want.
func sameEvents(t testing.TB, what string, got, want []event.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d events, want %d", what, len(got), len(want))
	}
	shown := 0
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: event %d:\n got  %s\n want %s", what, i, got[i].AppendJSON(nil), want[i].AppendJSON(nil))
			if shown++; shown == 3 {
				return
			}
		}
	}
}

func checkOrder(t testing.TB, h Harness) {
	want := emitAll(t, h, 1, 0, 100)
	sameEvents(t, "after emitting 100 events from one goroutine", settle(t, h), want)
}

func checkConcurrent(t testing.TB, h Harness) {
	const goroutines, perGoroutine = 8, 250
	var wg sync.WaitGroup
	for g := 1; g <= goroutines; g++ {
		wg.Go(func() {
			for i := range perGoroutine {
				if err := h.Sink.Emit(context.Background(), testEvent(g, i)); err != nil {
					t.Errorf("goroutine %d: Emit(event %d) = %v, want nil", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := settle(t, h)

	next := make(map[int64]int64) // per goroutine, the CallID expected next
	for _, ev := range got {
		g := ev.UserID
		if g < 1 || g > goroutines || ev.CallID < 0 || ev.CallID >= perGoroutine {
			t.Fatalf("an event nobody emitted arrived: %s", ev.AppendJSON(nil))
		}
		switch want := next[g]; {
		case ev.CallID < want:
			t.Fatalf("goroutine %d's event %d arrived twice, or after its event %d", g, ev.CallID, want-1)
		case ev.CallID > want:
			t.Fatalf("goroutine %d's event %d arrived, but its event %d never did before it", g, ev.CallID, want)
		}
		if want := testEvent(int(g), int(ev.CallID)); !reflect.DeepEqual(ev, want) {
			t.Fatalf("event arrived changed:\n got  %s\n want %s", ev.AppendJSON(nil), want.AppendJSON(nil))
		}
		next[g]++
	}
	for g := int64(1); g <= goroutines; g++ {
		if next[g] != perGoroutine {
			t.Errorf("goroutine %d: %d of its %d events arrived", g, next[g], perGoroutine)
		}
	}
}

func checkFlush(t testing.TB, h Harness) {
	f, ok := h.Sink.(emitter.Flusher)
	if !ok {
		t.Logf("%T is not an emitter.Flusher: nothing to check", h.Sink)
		return
	}
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush with nothing emitted = %v, want nil", err)
	}
	if got := h.Events(); len(got) != 0 {
		t.Fatalf("%d events arrived before any was emitted", len(got))
	}
	want := emitAll(t, h, 1, 0, 5)
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush = %v, want nil", err)
	}
	sameEvents(t, "after Flush", h.Events(), want)
	want = append(want, emitAll(t, h, 1, 5, 10)...)
	for range 2 {
		if err := f.Flush(); err != nil {
			t.Fatalf("Flush = %v, want nil", err)
		}
	}
	sameEvents(t, "after a second and third Flush", h.Events(), want)
}

func checkClose(t testing.TB, h Harness) {
	c, ok := h.Sink.(io.Closer)
	if !ok {
		t.Logf("%T is not an io.Closer: nothing to check", h.Sink)
		return
	}
	want := emitAll(t, h, 1, 0, 10)
	if err := c.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	sameEvents(t, "after Close", h.Events(), want)
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v, want nil like the first", err)
	}
	if err := h.Sink.Emit(context.Background(), testEvent(1, 10)); !errors.Is(err, emitter.ErrClosed) {
		t.Errorf("Emit after Close = %v, want an error that is errors.Is ErrClosed", err)
	}
	if f, ok := h.Sink.(emitter.Flusher); ok {
		if err := f.Flush(); !errors.Is(err, emitter.ErrClosed) {
			t.Errorf("Flush after Close = %v, want an error that is errors.Is ErrClosed", err)
		}
	}
	sameEvents(t, "after Emit after Close", h.Events(), want)
}

func checkCloseDuringEmit(t testing.TB, h Harness) {
	c, ok := h.Sink.(io.Closer)
	if !ok {
		t.Logf("%T is not an io.Closer: nothing to check", h.Sink)
		return
	}
	const goroutines, perGoroutine = 8, 200
	var (
		wg          sync.WaitGroup
		started     = make(chan struct{}, goroutines)
		closeReturn = make(chan struct{}) // closed once a Close has returned
		accepted    [goroutines + 1]int   // accepted[g]: how many of g's Emits returned nil; written by g only
	)
	for g := 1; g <= goroutines; g++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == perGoroutine {
					<-closeReturn // then one more Emit, which must fail
				}
				afterClose := false
				select {
				case <-closeReturn:
					afterClose = true
				default:
				}
				err := h.Sink.Emit(context.Background(), testEvent(g, i))
				if i == 0 {
					started <- struct{}{}
				}
				if err == nil {
					if afterClose {
						t.Errorf("goroutine %d: Emit begun after Close returned = nil, want ErrClosed", g)
						return
					}
					accepted[g]++
					continue
				}
				if !errors.Is(err, emitter.ErrClosed) {
					t.Errorf("goroutine %d: Emit(event %d) = %v, want nil or ErrClosed", g, i, err)
				}
				// Once closed, the sink stays closed.
				if err := h.Sink.Emit(context.Background(), testEvent(g, i+1)); !errors.Is(err, emitter.ErrClosed) {
					t.Errorf("goroutine %d: Emit after an Emit returned ErrClosed = %v, want ErrClosed", g, err)
				}
				return
			}
		})
	}
	for range goroutines {
		<-started
	}
	otherClose := make(chan error, 1)
	go func() { otherClose <- c.Close() }()
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	close(closeReturn)
	if err := <-otherClose; err != nil {
		t.Errorf("concurrent Close = %v, want nil", err)
	}
	wg.Wait()

	got := h.Events()
	next := make(map[int64]int)
	for _, ev := range got {
		g := ev.UserID
		if g < 1 || g > goroutines {
			t.Fatalf("an event nobody emitted arrived: %s", ev.AppendJSON(nil))
		}
		if int(ev.CallID) != next[g] || next[g] >= accepted[g] {
			t.Fatalf("goroutine %d's event %d arrived; want its events 0 to %d (those accepted), once each and in order", g, ev.CallID, accepted[g]-1)
		}
		next[g]++
	}
	for g := 1; g <= goroutines; g++ {
		if next[int64(g)] != accepted[g] {
			t.Errorf("goroutine %d: %d events accepted, %d arrived", g, accepted[g], next[int64(g)])
		}
	}
}

func checkCancelledContext(t testing.TB, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	const n = 20
	accepted := make([]bool, n)
	for i := range n {
		err := h.Sink.Emit(ctx, testEvent(1, i))
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Emit(event %d) with a cancelled context = %v, want nil or context.Canceled", i, err)
		}
		accepted[i] = err == nil
	}
	last := testEvent(1, n)
	if err := h.Sink.Emit(context.Background(), last); err != nil {
		t.Fatalf("Emit with a live context after cancelled ones = %v, want nil", err)
	}
	got := settle(t, h)
	// got must be a subsequence of what was emitted that holds every
	// accepted event and ends with the last one.
	i := 0
	for _, ev := range got {
		for i <= n && ev.CallID != int64(i) {
			if i < n && accepted[i] {
				t.Fatalf("event %d was accepted (Emit returned nil) but did not arrive", i)
			}
			i++
		}
		if i > n || ev.UserID != 1 {
			t.Fatalf("an event arrived twice, out of order or unasked: %s", ev.AppendJSON(nil))
		}
		i++
	}
	if i != n+1 {
		t.Fatalf("the event emitted with a live context after the cancelled ones did not arrive (or earlier accepted ones did not)")
	}
}
