package emitter

import "io"

// The optional interfaces each sink promises.
var (
	_ Emitter   = Func(nil)
	_ Emitter   = (*Chan)(nil)
	_ io.Closer = (*Chan)(nil)
	_ Emitter   = (*JSONLines)(nil)
	_ Flusher   = (*JSONLines)(nil)
	_ io.Closer = (*JSONLines)(nil)
	_ Emitter   = (*fanOut)(nil)
	_ Flusher   = (*fanOut)(nil)
	_ io.Closer = (*fanOut)(nil)
	_ Emitter   = (*Async)(nil)
	_ Flusher   = (*Async)(nil)
	_ io.Closer = (*Async)(nil)
	_ Emitter   = (*Recorder)(nil)
)
