// Package metrics defines the controller's Prometheus metrics: pushes, EnvoyFilter
// writes, generation results and the xDS connection to istiod.
package metrics

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"aeraki.io/aeraki/pkg/feedback"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
)

// Label values of the metrics. They are a small fixed set, never free text.
const (
	PushChanged   = "changed"
	PushUnchanged = "unchanged"
	PushError     = "error"

	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"

	// TranslateGenerated and TranslateReused are the results of
	// aeraki_translated_services_total.
	TranslateGenerated = "generated"
	TranslateReused    = "reused"

	// ReasonConflict is a generation failure because two services want the same
	// EnvoyFilter name; ReasonInvalid is every other one (input the generator rejects).
	ReasonConflict = "conflict"
	ReasonInvalid  = "invalid"

	// States of aeraki_proxies.
	ProxiesInSync    = "in_sync"
	ProxiesRejecting = "rejecting"
	ProxiesOther     = "other"
)

// XDS is what the metrics of the xDS connection to istiod, and of the route server
// sidecars connect to, read from those parts. This package does not import them, so
// that the parts that record metrics need not link the xDS client and server.
type XDS struct {
	// Synced, if set, is read at every scrape for aeraki_xds_synced.
	Synced func() bool
	// FailureReasons are the label values of aeraki_xds_connection_failures_total
	// (xds.FailureReasons), each a series from the start.
	FailureReasons []string
	// RouteRefusalReasons are the label values of aeraki_route_server_refused_total
	// (rds.RefusalReasons), each a series from the start.
	RouteRefusalReasons []string
	// RouteTypes are the type URLs the route server serves, each with a series of
	// aeraki_route_server_responses_total from the start.
	RouteTypes []string
}

// Metrics are the controller's own Prometheus metrics: pushes, EnvoyFilter writes,
// generation results and the xDS connection to istiod. A nil *Metrics records
// nothing, so every part works without it.
type Metrics struct {
	pushes             *prometheus.CounterVec
	triggersMerged     prometheus.Counter
	translateDuration  prometheus.Histogram
	translatedServices *prometheus.CounterVec
	pushDuration       prometheus.Histogram

	writes      *prometheus.CounterVec
	writeErrors *prometheus.CounterVec

	services         *prometheus.GaugeVec
	failures         *prometheus.GaugeVec
	portsLeftTCP     *prometheus.GaugeVec
	generationErrors *prometheus.CounterVec

	xdsConnected  prometheus.Gauge
	xdsReconnects prometheus.Counter
	xdsFailures   *prometheus.CounterVec

	routeStreams   prometheus.Gauge
	routeResponses *prometheus.CounterVec
	routeRefused   *prometheus.CounterVec

	proxies          *prometheus.GaugeVec
	proxiesRejecting *prometheus.GaugeVec
	proxyRejections  *prometheus.CounterVec
	contained        prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (the manager's
// ctrlmetrics.Registry in production, a fresh registry in tests).
func NewMetrics(reg prometheus.Registerer, xds XDS) (*Metrics, error) {
	protocol := []string{"protocol"}
	operation := []string{"operation"}
	m := &Metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_pushes_total",
			Help: "Pushes (translate, plan, apply) by result: changed wrote EnvoyFilters, unchanged found nothing to write, " +
				"error failed to read or write some (the next push retries).",
		}, []string{"result"}),
		triggersMerged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aeraki_push_triggers_merged_total",
			Help: "Triggers (config changes, resyncs, retries) handled by pushes; divided by aeraki_pushes_total " +
				"it tells how many changes the debouncer merges into one push.",
		}),
		translateDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aeraki_translate_duration_seconds",
			Help:    "Time to generate the desired EnvoyFilters from the config, per push.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1ms .. 16s
		}),
		translatedServices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_translated_services_total",
			Help: "Services translated by pushes, by result: generated (new, changed, or a full resync) or " +
				"reused (nothing they are built from changed since the last push).",
		}, []string{"result"}),
		pushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "aeraki_push_duration_seconds",
			Help:    "Time of a whole push: translate, read the current EnvoyFilters, write the difference.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. 65s
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_envoyfilter_writes_total",
			Help: "EnvoyFilters written to the apiserver, by operation.",
		}, operation),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_envoyfilter_write_errors_total",
			Help: "EnvoyFilter writes that failed after their retries, by operation; the next push tries again " +
				"(see the controller's log for the object and the error).",
		}, operation),
		services: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aeraki_services",
			Help: "Services with at least one port that gets EnvoyFilters, by protocol, as of the last push.",
		}, protocol),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aeraki_generation_failures",
			Help: "Services whose EnvoyFilters cannot be generated now (they keep the ones applied before), " +
				"by the failing port's protocol; the Warning Events on the objects say what to fix.",
		}, protocol),
		portsLeftTCP: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aeraki_ports_left_tcp",
			Help: "Service ports left fully or partly as plain TCP on purpose (for example no address for the " +
				"outbound side), by protocol, as of the last push; the PortLeftAsTCP Events say why.",
		}, protocol),
		generationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_generation_errors_total",
			Help: "Generation failures, each counted once when first seen, by protocol and reason " +
				"(conflict: two services want the same EnvoyFilter; invalid: input the generator rejects).",
		}, []string{"protocol", "reason"}),
		xdsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aeraki_xds_connected",
			Help: "1 while the xDS stream to istiod is up, 0 otherwise.",
		}),
		xdsReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aeraki_xds_reconnects_total",
			Help: "Times the xDS stream to istiod came up again after having been up (istiod restarts, network loss).",
		}),
		xdsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aeraki_xds_connection_failures_total",
			Help: "Failed attempts to connect to istiod and lost streams, by reason: unreachable, tls (istiod's certificate " +
				"does not verify against the root), token (the token file), unauthenticated (istiod rejected the token), " +
				"permission_denied (not istiod's root namespace), root_cert (the root certificate file); the log and " +
				"/readyz say what to fix.",
		}, []string{"reason"}),
	}
	m.routeStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aeraki_route_server_streams",
		Help: "Sidecar streams connected to this replica's route server.",
	})
	m.routeResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aeraki_route_server_responses_total",
		Help: "Route server responses sidecars accepted (result=ack) or rejected (result=nack), by resource type; " +
			"a NACK is logged with the sidecar and Envoy's error.",
	}, []string{"type", "result"})
	m.routeRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aeraki_route_server_refused_total",
		Help: "Connections the route server refused, by reason: no_certificate, untrusted (not of the mesh's root), " +
			"no_spiffe_id, roots (the root certificate file), server_certificate (this replica has none yet).",
	}, []string{"reason"})
	m.proxies = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "aeraki_proxies",
		Help: "Proxies istiod reported at the last look, by state: in_sync (accepted their last listeners and " +
			"clusters), rejecting (rejected some), other (an update on its way).",
	}, []string{"state"})
	m.proxiesRejecting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "aeraki_proxies_rejecting",
		Help: "Proxies rejecting listeners or clusters that our EnvoyFilters shaped, by the filters' protocol; " +
			"protocol=\"\" counts the proxies rejecting only what is not ours. The RejectedByProxies Events name the services.",
	}, protocol)
	m.proxyRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aeraki_proxy_rejections_total",
		Help: "Rejections of our EnvoyFilters by proxies, each counted once per service when first seen, by protocol.",
	}, protocol)
	m.contained = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aeraki_contained",
		Help: "Services (or shared ports) whose EnvoyFilters proxies rejected, for which the last accepted ones " +
			"stand in or none are written, until their config changes.",
	})
	synced := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aeraki_xds_synced",
		Help: "1 once the full Istio config was received from istiod (pushes wait for it), 0 before.",
	}, func() float64 {
		if xds.Synced != nil && xds.Synced() {
			return 1
		}
		return 0
	})
	// Every series exists from the start, so that rates and alerts see a 0 rather
	// than nothing.
	for _, r := range []string{PushChanged, PushUnchanged, PushError} {
		m.pushes.WithLabelValues(r)
	}
	for _, op := range []string{OpCreate, OpUpdate, OpDelete} {
		m.writes.WithLabelValues(op)
		m.writeErrors.WithLabelValues(op)
	}
	for _, r := range []string{TranslateGenerated, TranslateReused} {
		m.translatedServices.WithLabelValues(r)
	}
	for _, r := range xds.FailureReasons {
		m.xdsFailures.WithLabelValues(r)
	}
	for _, r := range xds.RouteRefusalReasons {
		m.routeRefused.WithLabelValues(r)
	}
	for _, typeURL := range xds.RouteTypes {
		for _, result := range []string{"ack", "nack"} {
			m.routeResponses.WithLabelValues(routeType(typeURL), result)
		}
	}
	for _, p := range model.Protocols {
		for _, r := range []string{ReasonConflict, ReasonInvalid} {
			m.generationErrors.WithLabelValues(string(p), r)
		}
	}
	for _, st := range []string{ProxiesInSync, ProxiesRejecting, ProxiesOther} {
		m.proxies.WithLabelValues(st)
	}
	m.proxiesRejecting.WithLabelValues("")
	for _, p := range model.Protocols {
		m.proxiesRejecting.WithLabelValues(string(p))
		m.proxyRejections.WithLabelValues(string(p))
	}
	m.setGauges(nil)
	var errs []error
	for _, c := range []prometheus.Collector{
		m.pushes, m.triggersMerged, m.translateDuration, m.translatedServices, m.pushDuration, m.writes, m.writeErrors,
		m.services, m.failures, m.portsLeftTCP, m.generationErrors, m.xdsConnected, m.xdsReconnects, m.xdsFailures, synced,
		m.routeStreams, m.routeResponses, m.routeRefused, m.proxies, m.proxiesRejecting, m.proxyRejections, m.contained,
	} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Pushed records the end of a push.
func (m *Metrics) Pushed(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.pushes.WithLabelValues(result).Inc()
	m.pushDuration.Observe(d.Seconds())
}

// Merged records the triggers a push handled.
func (m *Metrics) Merged(n int) {
	if m == nil {
		return
	}
	m.triggersMerged.Add(float64(n))
}

// Translated records a translation: its duration, the services generated and
// reused, and the gauges of what it generated.
func (m *Metrics) Translated(t *translate.Translation, d time.Duration) {
	if m == nil {
		return
	}
	m.translateDuration.Observe(d.Seconds())
	m.translatedServices.WithLabelValues(TranslateGenerated).Add(float64(t.Generated))
	m.translatedServices.WithLabelValues(TranslateReused).Add(float64(t.Reused))
	m.setGauges(t)
}

// setGauges sets the generation gauges of every known protocol, so that a protocol
// whose services all went away reads 0.
func (m *Metrics) setGauges(t *translate.Translation) {
	services := map[model.Protocol]int{}
	failures := map[model.Protocol]int{}
	left := map[model.Protocol]int{}
	if t != nil {
		services = t.Services
		for _, serr := range t.Failed {
			failures[serr.Protocol]++
		}
		for _, skipped := range t.Skipped {
			for _, s := range skipped {
				left[s.Protocol]++
			}
		}
	}
	set := func(g *prometheus.GaugeVec, counts map[model.Protocol]int) {
		for _, p := range model.Protocols {
			g.WithLabelValues(string(p)).Set(float64(counts[p]))
		}
	}
	set(m.services, services)
	set(m.failures, failures)
	set(m.portsLeftTCP, left)
}

// GenerationFailed counts a failure reported for the first time.
func (m *Metrics) GenerationFailed(serr *translate.ServiceError) {
	if m == nil {
		return
	}
	m.generationErrors.WithLabelValues(string(serr.Protocol), failureReason(serr)).Inc()
}

// Wrote records one EnvoyFilter write after its retries.
func (m *Metrics) Wrote(op string, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.writeErrors.WithLabelValues(op).Inc()
		return
	}
	m.writes.WithLabelValues(op).Inc()
}

// ObserveConnection records the xDS stream to istiod coming up (again: after having
// been up before) or going down. It makes Metrics an xds.ConnectionObserver.
func (m *Metrics) ObserveConnection(up, again bool) {
	if m == nil {
		return
	}
	if !up {
		m.xdsConnected.Set(0)
		return
	}
	m.xdsConnected.Set(1)
	if again {
		m.xdsReconnects.Inc()
	}
}

// ObserveConnectionFailure counts a failed attempt to connect to istiod, or a lost
// stream, by reason (one of xds's Reason constants).
func (m *Metrics) ObserveConnectionFailure(reason string) {
	if m == nil {
		return
	}
	m.xdsFailures.WithLabelValues(reason).Inc()
}

// ObserveStream records a sidecar's stream to the route server opening or closing.
// With ObserveAck and ObserveRefused it makes Metrics an rds.Observer.
func (m *Metrics) ObserveStream(open bool) {
	if m == nil {
		return
	}
	if open {
		m.routeStreams.Inc()
	} else {
		m.routeStreams.Dec()
	}
}

// ObserveAck records a sidecar accepting or rejecting a route server response.
func (m *Metrics) ObserveAck(typeURL string, accepted bool) {
	if m == nil {
		return
	}
	result := "nack"
	if accepted {
		result = "ack"
	}
	m.routeResponses.WithLabelValues(routeType(typeURL), result).Inc()
}

// routeType is a type URL's message name, the type label of the route server's metrics.
func routeType(typeURL string) string { return strings.TrimPrefix(typeURL, "type.googleapis.com/") }

// ObserveRefused counts a connection the route server refused, by reason (one of
// rds's Reason constants).
func (m *Metrics) ObserveRefused(reason string) {
	if m == nil {
		return
	}
	m.routeRefused.WithLabelValues(reason).Inc()
}

// failureReason classifies a failure for the reason label.
func failureReason(serr *translate.ServiceError) string {
	if errors.Is(serr, translate.ErrConflict) {
		return ReasonConflict
	}
	return ReasonInvalid
}

// ObservedProxies records what a look at the proxies found: r, the rejections
// seen for the first time (newly), and the owners contained.
func (m *Metrics) ObservedProxies(r *feedback.Report, newly []*feedback.Rejection, contained int) {
	if m == nil {
		return
	}
	m.proxies.WithLabelValues(ProxiesInSync).Set(float64(r.InSync))
	m.proxies.WithLabelValues(ProxiesRejecting).Set(float64(r.Rejecting))
	m.proxies.WithLabelValues(ProxiesOther).Set(float64(r.Proxies - r.InSync - r.Rejecting))
	m.proxiesRejecting.WithLabelValues("").Set(float64(r.Unattributed))
	for _, p := range model.Protocols {
		m.proxiesRejecting.WithLabelValues(string(p)).Set(float64(r.ByProtocol[p]))
	}
	for _, rej := range newly {
		for _, p := range rej.Protocols {
			m.proxyRejections.WithLabelValues(string(p)).Inc()
		}
	}
	m.contained.Set(float64(contained))
}
