// Package emitter is where call events go.
//
// Every transition of a call produces an [event.Event]; the engine hands it
// to an [Emitter]. The interface is one method, shaped like slog.Handler:
//
//	Emit(ctx context.Context, ev event.Event) error
//
// Optional behaviour is a second small interface found by type assertion:
// [Flusher] for sinks that buffer, and io.Closer for sinks that hold
// resources. The package ships these sinks:
//
//   - [Func]: a callback.
//   - [Chan]: a Go channel the caller reads.
//   - [JSONLines]: one JSON object per line, in the seed's field order.
//   - [Recorder]: keeps events in memory, for tests.
//   - [Discard]: drops everything.
//
// and two wrappers that take and return Emitters, so they compose:
//
//   - [FanOut]: every event to several sinks.
//   - [Async]: a bounded queue and one worker goroutine in front of a slow
//     sink, with an explicit full-queue [Policy]: block or fail with
//     [ErrQueueFull], never drop silently.
//
// An emission failure is always returned or reported: by Emit, or, for
// buffered and queued sinks, by the Flush or Close that finds it (or
// [AsyncConfig.OnError]).
//
// Network sinks (webhooks, message buses) are expected to implement Emitter
// (and io.Closer), honour ctx in Emit, and run behind an Async so a slow
// endpoint does not stall the engine. Package emittertest checks that a sink
// obeys the contract described on [Emitter].
package emitter
