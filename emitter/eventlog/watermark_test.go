package eventlog_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/callfsm/callfsm/emitter/eventlog"
)

func TestWatermark(t *testing.T) {
	var w eventlog.Watermark
	ctx := context.Background()
	w.Raise(5)
	w.Raise(3)
	assert.Equal(t, uint64(5), w.Load(), "a lower seq changes nothing")
	assert.NoError(t, w.Wait(ctx, 4))
	done := make(chan error, 1)
	go func() { done <- w.Wait(ctx, 5) }()
	w.Raise(6)
	assert.NoError(t, <-done)
	w.Close()
	w.Close()
	assert.ErrorIs(t, w.Wait(ctx, 0), eventlog.ErrClosed, "closed wins over a record")
}
