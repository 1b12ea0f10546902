package bootstrap

import (
	"sync/atomic"

	"github.com/go-logr/logr"
)

// errLeaderElectionLost is the error controller-runtime's manager reports whenever its
// leader election ends, including when the manager stops because it was asked to.
const errLeaderElectionLost = "leader election lost"

// stopSink is the manager's log sink. On a stop we asked for (Ctrl-C, SIGTERM), the
// manager releases its lease and then reports "leader election lost" as an error,
// which reads like a crash; stopSink says it at info level instead. A lease lost
// while running stays an error.
type stopSink struct {
	logr.LogSink
	stopping *atomic.Bool
}

// Init tells the sink of the frame stopSink adds, so that callers are reported right.
func (s *stopSink) Init(info logr.RuntimeInfo) {
	info.CallDepth++
	s.LogSink.Init(info)
}

func (s *stopSink) Error(err error, msg string, kv ...any) {
	if s.stopping.Load() && err != nil && err.Error() == errLeaderElectionLost {
		s.Info(0, "leader election ended with the stop", "reason", err.Error())
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s *stopSink) WithValues(kv ...any) logr.LogSink {
	return &stopSink{LogSink: s.LogSink.WithValues(kv...), stopping: s.stopping}
}

func (s *stopSink) WithName(name string) logr.LogSink {
	return &stopSink{LogSink: s.LogSink.WithName(name), stopping: s.stopping}
}
