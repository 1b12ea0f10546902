package xds

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"aeraki.io/aeraki/pkg/metrics"
)

// TestConnectionMetricsFollowTheStream drives streamResult as the stream interceptor
// does: the connection gauge follows it, and only an up after an up counts as a
// reconnect (not the first connection, nor repeated responses on one stream).
func TestConnectionMetricsFollowTheStream(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewMetrics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls []bool
	w := NewWatcher(Options{Address: "istiod:15010", Logger: testr.New(t), Observer: ConnectionObserverFunc(func(up, again bool) {
		calls = append(calls, up, again)
		m.ObserveConnection(up, again)
	})}, nil)
	connected := func() float64 { return read(t, reg, "aeraki_xds_connected") }
	reconnects := func() float64 { return read(t, reg, "aeraki_xds_reconnects_total") }

	lost := errors.New("connection reset")
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

// read returns the value of a metric without labels.
func read(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
