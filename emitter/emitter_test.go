package emitter_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
	"github.com/callfsm/callfsm/emitter/emittertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the emittertest kit over every sink the package
// ships, alone and composed.
func TestConformance(t *testing.T) {
	tests := []struct {
		name    string
		newSink func(t *testing.T) emittertest.Harness
	}{
		{"Func", newFuncHarness},
		{"Chan", newChanHarness},
		{"JSONLines", newJSONLinesHarness},
		{"FanOut", newFanOutHarness},
		{"Recorder", newRecorderHarness},
		{"Async/Block", newAsyncHarness(emitter.AsyncConfig{})},
		{"Async/Block/QueueSize=1", newAsyncHarness(emitter.AsyncConfig{QueueSize: 1})},
		{"Async/Fail", newAsyncHarness(emitter.AsyncConfig{QueueSize: 4096, Policy: emitter.Fail})},
		{"Async(FanOut(JSONLines,Recorder))", newComposedHarness},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emittertest.Run(t, tt.newSink)
		})
	}
}

func newRecorderHarness(*testing.T) emittertest.Harness {
	r := &emitter.Recorder{}
	return emittertest.Harness{Sink: r, Events: r.Events}
}

func newFuncHarness(*testing.T) emittertest.Harness {
	var (
		mu  sync.Mutex
		got []event.Event
	)
	f := emitter.Func(func(_ context.Context, ev event.Event) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	})
	return emittertest.Harness{Sink: f, Events: func() []event.Event {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}}
}

// newChanHarness reads the channel from a goroutine the harness owns. The
// same goroutine answers Events, so every event it has received is in the
// answer: an Emit that returned has been received.
func newChanHarness(t *testing.T) emittertest.Harness {
	ch := make(chan event.Event)
	requests := make(chan chan []event.Event)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var got []event.Event
		for {
			select {
			case ev := <-ch:
				got = append(got, ev)
			case reply := <-requests:
				reply <- slices.Clone(got)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	return emittertest.Harness{Sink: emitter.NewChan(ch), Events: func() []event.Event {
		reply := make(chan []event.Event)
		requests <- reply
		return <-reply
	}}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// decodeLines decodes JSON Lines, checking that each line is exactly what
// AppendJSON makes of the event it decodes to (so in the seed's order).
func decodeLines(t *testing.T, data []byte) []event.Event {
	t.Helper()
	var evs []event.Event
	for len(data) > 0 {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			t.Errorf("output ends in a partial line %q", line)
			break
		}
		data = rest
		ev, err := event.Decode(line)
		if err != nil {
			t.Errorf("line %d: %v", len(evs)+1, err)
			continue
		}
		if enc := ev.AppendJSON(nil); !bytes.Equal(enc, line) {
			t.Errorf("line %d is not in the seed's encoding:\n got  %s\n want %s", len(evs)+1, line, enc)
		}
		evs = append(evs, ev)
	}
	return evs
}

func newJSONLinesHarness(t *testing.T) emittertest.Harness {
	var buf lockedBuffer
	return emittertest.Harness{
		Sink:   emitter.NewJSONLines(&buf),
		Events: func() []event.Event { return decodeLines(t, buf.Bytes()) },
	}
}

// newFanOutHarness fans out to two Recorders, which must agree. Under
// concurrent Emits they may interleave the goroutines differently, so they
// are compared goroutine by goroutine (the kit's events carry the
// goroutine in UserID).
func newFanOutHarness(t *testing.T) emittertest.Harness {
	var r1, r2 emitter.Recorder
	byUser := func(a, b event.Event) int { return cmp.Compare(a.UserID, b.UserID) }
	return emittertest.Harness{
		Sink: emitter.FanOut(&r1, &r2),
		Events: func() []event.Event {
			e1, e2 := r1.Events(), r2.Events()
			s1, s2 := slices.Clone(e1), slices.Clone(e2)
			slices.SortStableFunc(s1, byUser)
			slices.SortStableFunc(s2, byUser)
			if !reflect.DeepEqual(s1, s2) {
				t.Errorf("the fan-out's sinks disagree: %d and %d events", len(e1), len(e2))
			}
			return e1
		},
	}
}

func newAsyncHarness(cfg emitter.AsyncConfig) func(t *testing.T) emittertest.Harness {
	return func(t *testing.T) emittertest.Harness {
		var r emitter.Recorder
		a, err := emitter.NewAsync(&r, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return emittertest.Harness{Sink: a, Events: r.Events}
	}
}

// newComposedHarness stacks the wrappers: an Async in front of a fan-out
// to a JSON Lines writer and a Recorder, whose contents must agree.
func newComposedHarness(t *testing.T) emittertest.Harness {
	var (
		buf lockedBuffer
		r   emitter.Recorder
	)
	a, err := emitter.NewAsync(emitter.FanOut(emitter.NewJSONLines(&buf), &r), emitter.AsyncConfig{QueueSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return emittertest.Harness{Sink: a, Events: func() []event.Event {
		lines, recorded := decodeLines(t, buf.Bytes()), r.Events()
		if !reflect.DeepEqual(lines, recorded) {
			t.Errorf("the JSON Lines output (%d events) and the Recorder (%d) disagree", len(lines), len(recorded))
		}
		return recorded
	}}
}

// testEvent returns a small valid event numbered i.
func testEvent(i int) event.Event {
	return event.Event{
		Event:     "popin_outgoing_call_initiated",
		SessionID: "bf0b3a76-0596-4602-a2c3-43e0db01b991",
		UserID:    58559,
		CallID:    int64(i),
		Agent:     event.AgentInfo{Name: "Sasha", Email: "sasha@example.com"},
		User:      event.UserInfo{Name: "Demo Vishal", Email: "demo@example.com", CountryCode: "+91"},
		Meta: event.Meta{Product: event.Product{
			Name: "Wireless Headphones", ID: "SKU-123", URL: "https://example.com/products/headphones",
		}},
		Timestamp: 1771832273,
	}
}

// callIDs lists the CallIDs of evs, for comparisons.
func callIDs(evs []event.Event) []int64 {
	ids := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i] = ev.CallID
	}
	return ids
}

func TestFuncPassesErrorsThrough(t *testing.T) {
	errSink := errors.New("sink failed")
	var got event.Event
	f := emitter.Func(func(_ context.Context, ev event.Event) error {
		got = ev
		return errSink
	})
	if err := f.Emit(context.Background(), testEvent(7)); err != errSink {
		t.Errorf("Emit = %v, want %v", err, errSink)
	}
	if got.CallID != 7 {
		t.Errorf("the function got CallID %d, want 7", got.CallID)
	}
}

func TestDiscard(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ctx := range []context.Context{context.Background(), ctx} {
		if err := emitter.Discard.Emit(ctx, testEvent(1)); err != nil {
			t.Errorf("Discard.Emit = %v, want nil", err)
		}
	}
}

func TestRecorder(t *testing.T) {
	var r emitter.Recorder
	if got := r.Events(); got != nil {
		t.Errorf("zero Recorder's Events = %v, want nil", got)
	}
	for i := range 3 {
		if err := r.Emit(context.Background(), testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := r.Events()
	got[0].CallID = 99 // a copy: the Recorder must not see this
	if ids := callIDs(r.Events()); !slices.Equal(ids, []int64{0, 1, 2}) {
		t.Errorf("Events = %v, want [0 1 2]", ids)
	}
	r.Reset()
	if got := r.Events(); len(got) != 0 {
		t.Errorf("after Reset, Events = %v, want none", callIDs(got))
	}
	if err := r.Emit(context.Background(), testEvent(5)); err != nil {
		t.Fatal(err)
	}
	if ids := callIDs(r.Events()); !slices.Equal(ids, []int64{5}) {
		t.Errorf("after Reset and Emit, Events = %v, want [5]", ids)
	}
}
