// Package dashboard checks demo/aeraki-demo.json against what the demo really
// produces: every metric a panel queries is one of the controller's own metrics, an
// Istio standard TCP metric, or an Envoy statistic of a protocol filter that aeraki
// generates for the demo's objects, named as Istio's sidecars export it.
package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/rds"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/plugin"
)

const (
	dashboardFile = "../../demo/aeraki-demo.json"
	// demoManifests are the per-protocol samples install-demo.sh applies.
	demoManifests = "../../demo/*/*.yaml"
	datasourceVar = "${datasource}"
)

// istioStandard are Istio's standard TCP metrics, exported by every sidecar.
var istioStandard = []string{
	"istio_tcp_sent_bytes_total",
	"istio_tcp_received_bytes_total",
	"istio_tcp_connections_opened_total",
	"istio_tcp_connections_closed_total",
}

// filterStats says where Envoy roots a protocol filter's statistics, given the
// filter's stat_prefix, and which statistic names (after the root, in Prometheus
// form) it emits, from Envoy's documentation of each filter.
var filterStats = map[string]struct {
	root  func(statPrefix string) string
	names *regexp.Regexp
}{
	"envoy.filters.network.dubbo_proxy": {
		root: func(p string) string { return "dubbo." + p + "." },
		names: regexp.MustCompile(`^(request(_twoway|_oneway|_event|_decoding_error|_decoding_success|_active)?|` +
			`response(_success|_error|_error_caused_connection_close|_business_exception|_decoding_error|_decoding_success)?|` +
			`local_response_(success|error|business_exception)|cx_destroy_(local|remote)_with_active_rq|request_time_ms_(bucket|sum|count))$`),
	},
	"envoy.filters.network.thrift_proxy": {
		root: func(p string) string { return "thrift." + p + "." },
		names: regexp.MustCompile(`^(request(_call|_oneway|_invalid_type|_decoding_error|_active)?|` +
			`response(_reply|_success|_error|_exception|_invalid_type|_decoding_error)?|` +
			`cx_destroy_(local|remote)_with_active_rq|request_time_ms_(bucket|sum|count))$`),
	},
	"envoy.filters.network.redis_proxy": {
		root: func(p string) string { return "redis." + p + "." },
		names: regexp.MustCompile(`^(downstream_(cx_active|cx_protocol_error|cx_rx_bytes_buffered|cx_rx_bytes_total|cx_total|` +
			`cx_tx_bytes_buffered|cx_tx_bytes_total|cx_drain_close|rq_active|rq_total)|splitter_(invalid_request|unsupported_command)|` +
			`command_[a-z]+_(total|success|error)|command_[a-z]+_latency_(bucket|sum|count))$`),
	},
	// Rooted at <stat_prefix>.zookeeper. (plugin/zookeeper's package doc).
	"envoy.filters.network.zookeeper_proxy": {
		root:  func(p string) string { return p + ".zookeeper." },
		names: regexp.MustCompile(`^(decoder_error|request_bytes|response_bytes|[a-z0-9]+_rq|[a-z0-9]+_resp)$`),
	},
	"envoy.filters.network.kafka_broker": {
		root:  func(p string) string { return "kafka." + p + "." },
		names: regexp.MustCompile(`^(request|response)_[a-z_]+$`),
	},
}

// istioFreeTags are the stat tags of Istio's sidecar bootstrap
// (tools/packaging/common/envoy_bootstrap.json) whose regexes are not anchored: they
// cut a piece out of any statistic name, protocol filters' included. A demo name
// that matches one would make the exported name differ from the one derived here.
var istioFreeTags = map[string]*regexp.Regexp{
	"cache":       regexp.MustCompile(`cache\.(.+?)\.`),
	"component":   regexp.MustCompile(`component\.(.+?)\.`),
	"tag":         regexp.MustCompile(`tag\.(.+?);\.`),
	"wasm_filter": regexp.MustCompile(`wasm_filter\.(.+?)\.`),
}

var invalidPromChar = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// promName is the name Envoy's Prometheus endpoint gives a statistic: every character
// outside [a-zA-Z0-9_] becomes `_`, and `envoy_` goes in front.
func promName(stat string) string {
	return "envoy_" + invalidPromChar.ReplaceAllString(stat, "_")
}

// filterPrefix is the Prometheus name prefix of one generated filter's statistics.
type filterPrefix struct {
	prefix string
	names  *regexp.Regexp
	from   string // for messages: the EnvoyFilter and filter
}

// known is everything a dashboard query may name.
type known struct {
	controller map[string]bool
	istio      map[string]bool
	filters    []filterPrefix
}

// check returns the problem with one metric name, or nil.
func (k *known) check(metric string) error {
	if k.controller[metric] || k.istio[metric] {
		return nil
	}
	for _, f := range k.filters {
		rest, ok := strings.CutPrefix(metric, f.prefix)
		if !ok {
			continue
		}
		if f.names.MatchString(rest) {
			return nil
		}
		return fmt.Errorf("%s: %q is not a statistic of the filter of %s", metric, rest, f.from)
	}
	return fmt.Errorf("%s: neither a controller metric, an Istio standard metric, nor a statistic of a filter aeraki generates for the demo", metric)
}

// controllerMetrics registers the controller's metrics in a fresh registry and
// returns the names Prometheus scrapes from it.
func controllerMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := metrics.NewMetrics(reg, metrics.XDS{FailureReasons: xds.FailureReasons(), RouteRefusalReasons: rds.RefusalReasons(), RouteTypes: plugin.RouteTypes()}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range families {
		out[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[f.GetName()+s] = true
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the controller registers no metrics")
	}
	return out
}

// demoFilters runs aeraki's translation on the demo's manifests, as `aeraki
// generate` does, with stock sidecars (no contrib filters), and returns the
// statistic prefixes of every generated protocol filter.
func demoFilters(t *testing.T) []filterPrefix {
	t.Helper()
	files, err := filepath.Glob(demoManifests)
	if err != nil || len(files) == 0 {
		t.Fatalf("no demo manifests %s: %v", demoManifests, err)
	}
	objs, errs := manifest.ReadPaths(files)
	for _, err := range errs {
		t.Errorf("reading the demo: %v", err)
	}
	// The cluster gives Services their addresses; without one, only the inbound
	// side is generated, and the dashboard shows the clients' (outbound) side.
	for i, svc := range objs.Services {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = fmt.Sprintf("10.250.0.%d", i+1)
		}
	}
	snap := objs.Snapshot("cluster.local")
	// As installed: the route server on, so that ports only one protocol declares
	// (Dubbo's 20880 in the demo) share one client filter.
	ctx := generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local", RouteDiscovery: generatortest.RouteDiscovery}
	tr, err := translate.Translate(ctx, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, serr := range translate.SortedErrors(tr.Failed) {
		t.Errorf("generating for the demo: %s/%s port %d: %v", serr.Service.Namespace, serr.Service.ObjectName(), serr.Port.Number, serr.Err)
	}
	var out []filterPrefix
	for _, ef := range translate.SortedFilters(tr.Filters) {
		for _, p := range ef.Spec.GetConfigPatches() {
			fields := p.GetPatch().GetValue().GetFields()
			name := fields["name"].GetStringValue()
			stats, ok := filterStats[name]
			if !ok {
				continue // a cluster patch, or tcp_proxy
			}
			typed := field(fields, "typedConfig", "typed_config").GetStructValue().GetFields()
			sp := field(typed, "statPrefix", "stat_prefix").GetStringValue()
			if sp == "" {
				t.Errorf("EnvoyFilter %s: %s without stat_prefix", ef.Name, name)
				continue
			}
			root := stats.root(sp)
			for tag, re := range istioFreeTags {
				if m := re.FindString(root); m != "" {
					t.Errorf("EnvoyFilter %s: Istio's sidecars cut the stat tag %q (%q) out of %q: rename the demo's object", ef.Name, tag, m, root)
				}
			}
			out = append(out, filterPrefix{prefix: promName(root), names: stats.names, from: ef.Name + " (" + name + ")"})
		}
	}
	if len(out) == 0 {
		t.Fatal("the demo generates no protocol filter")
	}
	return out
}

func field(m map[string]*structpb.Value, names ...string) *structpb.Value {
	for _, n := range names {
		if v, ok := m[n]; ok {
			return v
		}
	}
	return nil
}

func newKnown(t *testing.T) *known {
	t.Helper()
	k := &known{controller: controllerMetrics(t), istio: map[string]bool{}, filters: demoFilters(t)}
	for _, m := range istioStandard {
		k.istio[m] = true
	}
	return k
}

// Dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Datasource *datasource `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	Options struct {
		Content string `json:"content"`
	} `json:"options"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboard checks that the dashboard is a Grafana dashboard whose queries use
// its Prometheus datasource variable, and that every metric it queries exists for
// the demo.
func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid: %q %q", d.Title, d.UID)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query string `json:"query"`
	}) bool {
		return "${"+v.Name+"}" == datasourceVar && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("no Prometheus datasource variable %s", datasourceVar)
	}
	k := newKnown(t)
	ids := map[int]bool{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		switch p.Type {
		case "row":
			continue
		case "text":
			if strings.TrimSpace(p.Options.Content) == "" {
				t.Errorf("text panel %q is empty", p.Title)
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceVar {
			t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, datasourceVar)
		}
		for _, target := range p.Targets {
			where := fmt.Sprintf("panel %q, query %s", p.Title, target.RefID)
			if target.Datasource == nil || target.Datasource.Type != "prometheus" || target.Datasource.UID != datasourceVar {
				t.Errorf("%s: datasource %+v, want prometheus %s", where, target.Datasource, datasourceVar)
			}
			metrics := metricNames(target.Expr)
			if len(metrics) == 0 {
				t.Errorf("%s: no metric in %q", where, target.Expr)
			}
			for _, m := range metrics {
				if err := k.check(m); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			queries++
		}
	}
	t.Logf("%d queries checked against %d controller metrics and %d generated filters", queries, len(k.controller), len(k.filters))
}

// TestCheckRejectsUnknownMetrics proves that the check fails for names the demo does
// not produce: another service, a misspelt statistic, a filter that stock sidecars
// lack, an unknown controller metric.
func TestCheckRejectsUnknownMetrics(t *testing.T) {
	k := newKnown(t)
	for _, expr := range []string{
		`sum(rate(envoy_dubbo_outbound_20880__nosuch_dubbo_svc_cluster_local_request[5m]))`,
		`sum(rate(envoy_dubbo_outbound_20880_dubbo_reqeust[5m]))`,
		`rate(envoy_kafka_outbound_9092_kafka_kafka_svc_cluster_local_request_produce_request[5m])`,
		`rate(envoy_redis_outbound_6379__cache_redis_svc_cluster_local_downstream_rq_total[5m])`,
		`sum(aeraki_no_such_metric)`,
	} {
		ms := metricNames(expr)
		if len(ms) != 1 {
			t.Fatalf("%q: metric names %q, want one", expr, ms)
		}
		if err := k.check(ms[0]); err == nil {
			t.Errorf("%s accepted", ms[0])
		}
	}
	for _, ok := range []string{
		"envoy_dubbo_outbound_20880_dubbo_request",
		"aeraki_push_duration_seconds_bucket",
		"istio_tcp_sent_bytes_total",
	} {
		if err := k.check(ok); err != nil {
			t.Errorf("%s rejected: %v", ok, err)
		}
	}
}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	braces     = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true}
)

// metricNames returns the metric names a PromQL expression selects: identifiers that
// are not functions, keywords, label names or inside strings, selectors and ranges.
func metricNames(expr string) []string {
	s := stringLit.ReplaceAllString(expr, `""`)
	s = braces.ReplaceAllString(s, "")
	s = grouping.ReplaceAllString(s, "")
	var out []string
	for _, loc := range identifier.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or unit of a number
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") || keywords[name] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y(z)"}[$__rate_interval]))) + on (pod) group_left (c) b offset 5m and bool 1e3`)
	if want := []string{"a_bucket", "b"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
