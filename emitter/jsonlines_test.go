package emitter_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/emitter"
)

func TestJSONLinesWritesOneEventPerLineInSeedOrder(t *testing.T) {
	var buf bytes.Buffer
	j := emitter.NewJSONLines(&buf)
	first := testEvent(1)
	second := testEvent(2)
	second.Event = "popin_outgoing_call_network_failure"
	second.Participant = event.User
	for _, ev := range []event.Event{first, second} {
		if err := j.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `{"event":"popin_outgoing_call_initiated","session_id":"bf0b3a76-0596-4602-a2c3-43e0db01b991","user_id":58559,"call_id":1,"schedule_id":null,"agent":{"name":"Sasha","email":"sasha@example.com"},"user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}},"timestamp":1771832273}
{"event":"popin_outgoing_call_network_failure","session_id":"bf0b3a76-0596-4602-a2c3-43e0db01b991","user_id":58559,"call_id":2,"schedule_id":null,"agent":{"name":"Sasha","email":"sasha@example.com"},"user":{"name":"Demo Vishal","email":"demo@example.com","phone_number":null,"country_code":"+91"},"meta":{"product":{"name":"Wireless Headphones","id":"SKU-123","url":"https://example.com/products/headphones"}},"participant":"user","timestamp":1771832273}
`
	if got := buf.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// countingWriter counts the Write calls and the bytes it receives.
type countingWriter struct {
	writes, bytes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	w.bytes += len(p)
	return len(p), nil
}

func TestJSONLinesBuffersUpTo64KiB(t *testing.T) {
	var w countingWriter
	j := emitter.NewJSONLines(&w)
	ev0 := testEvent(0)
	line := len(ev0.AppendJSON(nil)) + 1
	perBuffer := (64<<10 + line - 1) / line // Emits that fill the buffer
	for i := range perBuffer - 1 {
		if err := j.Emit(context.Background(), testEvent(0)); err != nil {
			t.Fatal(err)
		}
		if w.writes != 0 {
			t.Fatalf("written after %d events (%d bytes), before the buffer was full", i+1, (i+1)*line)
		}
	}
	if err := j.Emit(context.Background(), testEvent(0)); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 || w.bytes != perBuffer*line {
		t.Fatalf("after %d events: %d writes of %d bytes, want 1 of %d", perBuffer, w.writes, w.bytes, perBuffer*line)
	}
	if err := j.Emit(context.Background(), testEvent(0)); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil { // nothing buffered: no write
		t.Fatal(err)
	}
	if w.writes != 2 || w.bytes != (perBuffer+1)*line {
		t.Errorf("after Flush: %d writes of %d bytes, want 2 of %d", w.writes, w.bytes, (perBuffer+1)*line)
	}
}

// failingWriter fails every Write with err, after accepting n bytes, and
// counts its Closes.
type failingWriter struct {
	err    error
	n      int
	closes int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	return min(w.n, len(p)), w.err
}

func (w *failingWriter) Close() error {
	w.closes++
	return nil
}

var errWrite = errors.New("disk full")

func TestJSONLinesWriteErrorSticks(t *testing.T) {
	w := &failingWriter{err: errWrite, n: 10}
	j := emitter.NewJSONLines(w)
	if err := j.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatalf("Emit into the buffer = %v, want nil", err)
	}
	if err := j.Flush(); !errors.Is(err, errWrite) {
		t.Fatalf("Flush = %v, want the write error", err)
	}
	if err := j.Emit(context.Background(), testEvent(2)); !errors.Is(err, errWrite) {
		t.Errorf("Emit after a write error = %v, want the write error", err)
	}
	if err := j.Flush(); !errors.Is(err, errWrite) {
		t.Errorf("second Flush = %v, want the write error", err)
	}
	err := j.Close()
	if !errors.Is(err, errWrite) {
		t.Errorf("Close = %v, want the write error", err)
	}
	if w.closes != 1 {
		t.Errorf("the writer was closed %d times, want 1 despite the error", w.closes)
	}
	if err2 := j.Close(); err2 != err {
		t.Errorf("second Close = %v, want the first's %v", err2, err)
	}
	if w.closes != 1 {
		t.Errorf("after a second Close the writer was closed %d times, want 1", w.closes)
	}
}

func TestJSONLinesEmitReportsTheWriteItCaused(t *testing.T) {
	j := emitter.NewJSONLines(&failingWriter{err: errWrite})
	for i := range 10_000 {
		err := j.Emit(context.Background(), testEvent(i))
		if err == nil {
			continue
		}
		if !errors.Is(err, errWrite) {
			t.Fatalf("Emit %d = %v, want the write error", i, err)
		}
		if err := j.Emit(context.Background(), testEvent(i+1)); !errors.Is(err, errWrite) {
			t.Fatalf("the Emit after the failed one = %v, want the write error", err)
		}
		return
	}
	t.Fatal("no Emit reported the failing writer")
}

func TestJSONLinesShortWrite(t *testing.T) {
	j := emitter.NewJSONLines(&failingWriter{n: 5}) // 5 bytes, no error
	if err := j.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("Flush = %v, want io.ErrShortWrite", err)
	}
}

// closeWriter is a strings.Builder that counts Closes and fails them.
type closeWriter struct {
	strings.Builder
	closes int
}

var errClose = errors.New("close failed")

func (w *closeWriter) Close() error {
	w.closes++
	return errClose
}

func TestJSONLinesCloseFlushesAndClosesTheWriter(t *testing.T) {
	w := &closeWriter{}
	j := emitter.NewJSONLines(w)
	if err := j.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	err := j.Close()
	if !errors.Is(err, errClose) {
		t.Errorf("Close = %v, want the writer's Close error", err)
	}
	if lines := strings.Count(w.String(), "\n"); lines != 1 {
		t.Errorf("%d lines written by Close, want 1", lines)
	}
	if err2 := j.Close(); err2 != err || w.closes != 1 {
		t.Errorf("second Close = %v with %d writer Closes, want %v and 1", err2, w.closes, err)
	}
}

func TestJSONLinesFlushesABufferedWriter(t *testing.T) {
	var out bytes.Buffer
	j := emitter.NewJSONLines(bufio.NewWriter(&out))
	if err := j.Emit(context.Background(), testEvent(1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(out.Bytes(), []byte{'\n'}); lines != 1 {
		t.Errorf("%d lines reached the bufio.Writer's destination after Flush, want 1", lines)
	}
}

func TestJSONLinesEmitDoesNotAllocate(t *testing.T) {
	j := emitter.NewJSONLines(io.Discard)
	ev := testEvent(1)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := j.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Emit allocates %v times per call, want 0", allocs)
	}
}

func TestNewJSONLinesPanicsOnNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewJSONLines(nil) did not panic")
		}
	}()
	emitter.NewJSONLines(nil)
}
