package meshcert

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: Run must close
// its connection to istiod and stop its timers when its context ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
