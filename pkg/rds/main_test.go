package rds

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: Serve starts
// gRPC's goroutines and go-control-plane's per stream, which must all end with its
// context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
