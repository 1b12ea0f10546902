package bootstrap

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

func TestStopSinkQuietensOnlyTheStopWeAskedFor(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	var stopping atomic.Bool
	log := logr.New(&stopSink{LogSink: base.GetSink(), stopping: &stopping}).WithName("manager").WithValues("k", "v")
	lost := errors.New(errLeaderElectionLost)

	log.Error(lost, "error received after stop sequence was engaged")
	log.Error(errors.New("boom"), "something else")
	stopping.Store(true)
	log.Error(lost, "error received after stop sequence was engaged")
	log.Error(errors.New("boom"), "something else")

	want := []string{`"error"="leader election lost"`, `"error"="boom"`, `"msg"="leader election ended with the stop"`, `"error"="boom"`}
	if len(lines) != len(want) {
		t.Fatalf("logged %q", lines)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) || !strings.Contains(lines[i], `"k"="v"`) {
			t.Errorf("line %d = %s, want it to hold %s and the logger's values", i, lines[i], w)
		}
	}
	if strings.Contains(lines[2], `"error"`) {
		t.Errorf("the lease released by a stop we asked for is logged as an error: %s", lines[2])
	}
}
