package push

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: the push loop
// starts goroutines (pushes, retries, resyncs) that must all end with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
