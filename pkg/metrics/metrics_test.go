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

// The route server's metrics: streams connected, responses accepted and rejected by
// type, refused connections by reason, each known series from the start.
func TestMetricsObserveRouteServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	const typeURL = "type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration"
	m, err := metrics.NewMetrics(reg, metrics.XDS{RouteRefusalReasons: []string{"no_certificate", "untrusted"}, RouteTypes: []string{typeURL}})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveStream(true)
	m.ObserveStream(true)
	m.ObserveStream(false)
	m.ObserveAck(typeURL, true)
	m.ObserveAck(typeURL, true)
	m.ObserveAck(typeURL, false)
	m.ObserveRefused("untrusted")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(metricstest.WithMetadata(t, reg, `
		aeraki_route_server_streams 1
		aeraki_route_server_responses_total{result="ack",type="envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration"} 2
		aeraki_route_server_responses_total{result="nack",type="envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration"} 1
		aeraki_route_server_refused_total{reason="no_certificate"} 0
		aeraki_route_server_refused_total{reason="untrusted"} 1
	`)), "aeraki_route_server_streams", "aeraki_route_server_responses_total", "aeraki_route_server_refused_total"); err != nil {
		t.Error(err)
	}
	var nilMetrics *metrics.Metrics
	nilMetrics.ObserveStream(true)
	nilMetrics.ObserveAck(typeURL, false)
	nilMetrics.ObserveRefused("untrusted")
}
