package emitter_test

import (
	"context"
	"io"
	"testing"

	"github.com/callfsm/callfsm/emitter"
)

func BenchmarkJSONLinesDiscard(b *testing.B) {
	ev := testEvent(28844)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		j := emitter.NewJSONLines(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			if err := j.Emit(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		j := emitter.NewJSONLines(io.Discard)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := j.Emit(ctx, ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkAsync measures queueing and delivery by the worker: the timed
// part ends with Close, so every event has been handed to next.
func BenchmarkAsync(b *testing.B) {
	ev := testEvent(28844)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		next func() emitter.Emitter
	}{
		{"Discard", func() emitter.Emitter { return emitter.Discard }},
		{"JSONLines", func() emitter.Emitter { return emitter.NewJSONLines(io.Discard) }},
	} {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			a, err := emitter.NewAsync(bc.next(), emitter.AsyncConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := a.Emit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
			if err := a.Close(); err != nil {
				b.Fatal(err)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			a, err := emitter.NewAsync(bc.next(), emitter.AsyncConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := a.Emit(ctx, ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := a.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkFanOut(b *testing.B) {
	f := emitter.FanOut(emitter.NewJSONLines(io.Discard), emitter.Discard)
	ev := testEvent(28844)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Emit(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
