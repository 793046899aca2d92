package timeout_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the test binary if any test or benchmark leaves a goroutine
// running (for instance a Real timer callback still in flight).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
