package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/metrics/metricstest"
)

func TestMetricsRegisterOnceAndLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.NewMetrics(reg, metrics.XDS{Synced: func() bool { return true }}); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewMetrics(reg, metrics.XDS{}); err == nil {
		t.Error("registering twice on one registry: no error")
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP aeraki_xds_synced 1 once the full Istio config was received from istiod (pushes wait for it), 0 before.
# TYPE aeraki_xds_synced gauge
aeraki_xds_synced 1
`), "aeraki_xds_synced"); err != nil {
		t.Error(err)
	}
}

func TestMetricsObserveConnection(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewMetrics(reg, metrics.XDS{})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveConnection(true, false)
	m.ObserveConnection(false, false)
	m.ObserveConnection(true, true)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(metricstest.WithMetadata(t, reg, `
		aeraki_xds_connected 1
		aeraki_xds_reconnects_total 1
	`)), "aeraki_xds_connected", "aeraki_xds_reconnects_total"); err != nil {
		t.Error(err)
	}
	var nilMetrics *metrics.Metrics
	nilMetrics.ObserveConnection(true, true) // nil records nothing, and does not panic
	nilMetrics.ObserveConnectionFailure("tls")
}

// Every reason's series exists from the start, so that an alert on its rate sees 0.
func TestMetricsObserveConnectionFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	reasons := []string{"unreachable", "tls", "token", "unauthenticated", "permission_denied", "root_cert"}
	m, err := metrics.NewMetrics(reg, metrics.XDS{FailureReasons: reasons})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveConnectionFailure("tls")
	m.ObserveConnectionFailure("tls")
	m.ObserveConnectionFailure("unreachable")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(metricstest.WithMetadata(t, reg, `
		aeraki_xds_connection_failures_total{reason="permission_denied"} 0
		aeraki_xds_connection_failures_total{reason="root_cert"} 0
		aeraki_xds_connection_failures_total{reason="tls"} 2
		aeraki_xds_connection_failures_total{reason="token"} 0
		aeraki_xds_connection_failures_total{reason="unauthenticated"} 0
		aeraki_xds_connection_failures_total{reason="unreachable"} 1
	`)), "aeraki_xds_connection_failures_total"); err != nil {
		t.Error(err)
	}
}
