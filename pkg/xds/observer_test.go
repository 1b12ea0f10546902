package xds

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/metrics/metricstest"
)

// TestConnectionMetricsFollowTheStream drives streamResult as the stream interceptor
// does: the connection gauge follows it, and only an up after an up counts as a
// reconnect (not the first connection, nor repeated responses on one stream).
func TestConnectionMetricsFollowTheStream(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewMetrics(reg, metrics.XDS{})
	if err != nil {
		t.Fatal(err)
	}
	var calls []bool
	w := NewWatcher(Options{Address: "istiod:15010", Logger: testr.New(t), Observer: ConnectionObserverFuncs{
		Connection: func(up, again bool) {
			calls = append(calls, up, again)
			m.ObserveConnection(up, again)
		},
		Failure: m.ObserveConnectionFailure,
	}}, nil)
	connected := func() float64 { return metricstest.Value(t, reg, "aeraki_xds_connected") }
	reconnects := func() float64 { return metricstest.Value(t, reg, "aeraki_xds_reconnects_total") }

	lost := status.Error(codes.Unavailable, "connection reset")
	steps := []struct {
		err                   error
		connected, reconnects float64
	}{
		{nil, 1, 0},  // first response
		{nil, 1, 0},  // more responses on the same stream
		{lost, 0, 0}, // down
		{lost, 0, 0}, // a failed attempt while down
		{nil, 1, 1},  // up again
		{lost, 0, 1},
		{nil, 1, 2},
	}
	for i, s := range steps {
		w.streamResult(s.err)
		if got := connected(); got != s.connected {
			t.Errorf("step %d: connected = %v, want %v", i, got, s.connected)
		}
		if got := reconnects(); got != s.reconnects {
			t.Errorf("step %d: reconnects = %v, want %v", i, got, s.reconnects)
		}
		if reason, _ := w.LastError(); (reason == "") != (s.err == nil) {
			t.Errorf("step %d: LastError reason %q after error %v", i, reason, s.err)
		}
	}
	if got := metricstest.Value(t, reg, "aeraki_xds_connection_failures_total", "reason", ReasonUnreachable); got != 3 {
		t.Errorf("unreachable failures = %v, want 3", got)
	}
	// Up, down, up again, down, up again: a call per change, not per response.
	want := []bool{true, false, false, false, true, true, false, false, true, true}
	if len(calls) != len(want) {
		t.Fatalf("observer calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("observer calls %v, want %v", calls, want)
		}
	}
	w.setDown() // what Run does when it returns
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aeraki_xds_connected 1 while the xDS stream to istiod is up, 0 otherwise.
# TYPE aeraki_xds_connected gauge
aeraki_xds_connected 0
`), "aeraki_xds_connected"); err != nil {
		t.Errorf("after Run returned: %v", err)
	}
}

// A token the credentials could not read reaches the stream as gRPC's
// Unauthenticated; what the credentials recorded decides, and is reported once per
// reason while the attempts go on.
func TestStreamResultPrefersTheLocalFailure(t *testing.T) {
	var reasons []string
	w := NewWatcher(Options{Address: "istiod:15012", Logger: testr.New(t), Observer: ConnectionObserverFuncs{
		Failure: func(reason string) { reasons = append(reasons, reason) },
	}}, nil)
	local := w.noteLocal(ReasonToken, errors.New("reading the token: no such file"))
	w.streamResult(status.Error(codes.Unauthenticated, "transport: per-RPC creds failed due to error: "+local.Error()))
	reason, msg := w.LastError()
	if reason != ReasonToken || !strings.Contains(msg, DefaultTokenFile) || !strings.Contains(msg, "no such file") {
		t.Errorf("LastError = %q, %q; want token naming %s and the cause", reason, msg, DefaultTokenFile)
	}
	// istiod itself refuses the next attempt.
	w.streamResult(status.Error(codes.Unauthenticated, "authentication failure"))
	if reason, _ := w.LastError(); reason != ReasonUnauthenticated {
		t.Errorf("LastError reason %q, want %s", reason, ReasonUnauthenticated)
	}
	// Our own shutdown is no failure.
	w.streamResult(status.Error(codes.Canceled, "context canceled"))
	if !slices.Equal(reasons, []string{ReasonToken, ReasonUnauthenticated}) {
		t.Errorf("failures observed %v", reasons)
	}
	w.streamResult(nil)
	if reason, msg := w.LastError(); reason != "" || msg != "" {
		t.Errorf("LastError = %q, %q once connected; want none", reason, msg)
	}
}
