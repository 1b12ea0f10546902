package listeners

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/log"

	"aeraki.io/aeraki/pkg/generator"
	amodel "aeraki.io/aeraki/pkg/model"
	modelfixture "aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// The cost our EnvoyFilters add to istiod's build of one sidecar's configuration
// (BENCHMARKS.md, "What our EnvoyFilters cost istiod"): the same mesh of n services
// of a fixture shape, once without and once with the EnvoyFilters the translation
// makes for it. Setup (translation, istiod with every config, its first push) is
// outside the timer; each iteration is one build of the client's listeners or
// clusters from the push context, as istiod does for a push. The fake server's
// config generator has its cache disabled, so nothing is reused between iterations.

// costSizes are the mesh sizes, in services.
var costSizes = []int{1000, 4000, 10000}

const (
	// costClientNamespace holds the client sidecar and, for the listener benchmarks,
	// one Dubbo service of its own.
	costClientNamespace = "client"
	// tcpProxyFilter is the filter Istio puts on a plain TCP listener.
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	// costPort is every fixture service's port; costMaxConnections the fixture
	// RedisDestination's cap.
	costPort           = 20880
	costMaxConnections = 7
)

// costCase is one mesh.
type costCase struct {
	shape modelfixture.Shape
	n     int
	// with feeds istiod the translation's EnvoyFilters.
	with bool
	// shared translates with a route server: one client filter per port.
	shared bool
	// local adds service n of the shape in the client's namespace.
	local bool
	// ownNamespace gives the client's namespace a Sidecar importing only itself.
	ownNamespace bool
}

func (c costCase) name(prefix string) string {
	with := "without"
	switch {
	case c.shared:
		with = "shared"
	case c.with:
		with = "with"
	}
	return fmt.Sprintf("%s/%d/%s", prefix, c.n, with)
}

// BenchmarkSidecarListeners is istiod's build of one client sidecar's listeners in a
// mesh of Dubbo services, without our EnvoyFilters, with one per service and address
// (with), and with one per port whose routes a route server serves (shared): the
// client sees every service (dubbo), or its Sidecar imports only its own namespace,
// which holds one Dubbo service (dubbo-own-namespace).
func BenchmarkSidecarListeners(b *testing.B) {
	quietIstio(b)
	for _, scope := range []struct {
		name         string
		ownNamespace bool
	}{{"dubbo", false}, {"dubbo-own-namespace", true}} {
		for _, n := range costSizes {
			for _, mode := range []struct{ with, shared bool }{{false, false}, {true, false}, {true, true}} {
				c := costCase{shape: modelfixture.Dubbo, n: n, with: mode.with, shared: mode.shared, local: true, ownNamespace: scope.ownNamespace}
				b.Run(c.name(scope.name), func(b *testing.B) {
					s, report := costMesh(b, c)
					proxy := costClient(s)
					report = append(report, checkCostListeners(b, s, proxy, c)...)
					for b.Loop() {
						s.Listeners(proxy)
					}
					report.to(b)
				})
			}
		}
	}
}

// BenchmarkSidecarClusters is istiod's build of one client sidecar's clusters in a
// mesh of Redis services with RedisDestinations, without and with our EnvoyFilters
// (with them, one CLUSTER patch per service).
func BenchmarkSidecarClusters(b *testing.B) {
	quietIstio(b)
	for _, n := range costSizes {
		for _, with := range []bool{false, true} {
			c := costCase{shape: modelfixture.Redis, n: n, with: with}
			b.Run(c.name(string(c.shape)), func(b *testing.B) {
				s, report := costMesh(b, c)
				proxy := costClient(s)
				report = append(report, checkCostClusters(b, s, proxy, c)...)
				req := &model.PushRequest{Push: s.PushContext()}
				for b.Loop() {
					s.ConfigGen.BuildClusters(proxy, req)
				}
				report.to(b)
			})
		}
	}
}

// costMetrics are metrics measured outside the timer, reported once the loop is done
// (the loop's first iteration drops metrics reported before it).
type costMetrics []costMetric

type costMetric struct {
	value float64
	unit  string
}

func (ms costMetrics) to(b *testing.B) {
	for _, m := range ms {
		b.ReportMetric(m.value, m.unit)
	}
}

// costMesh starts istiod with the mesh of c and returns how long that took and how
// much the live heap grew: translation, config and istiod with its first push context.
func costMesh(b *testing.B, c costCase) (*xds.FakeDiscoveryServer, costMetrics) {
	b.Helper()
	before := liveHeapMiB()
	start := time.Now()
	snap := modelfixture.Snapshot(c.shape, c.n)
	if c.local {
		se, vs, dr := len(snap.ServiceEntries), len(snap.VirtualServices), len(snap.DestinationRules)
		modelfixture.Add(snap, c.shape, c.n)
		for _, added := range [][]amodel.Object{snap.ServiceEntries[se:], snap.VirtualServices[vs:], snap.DestinationRules[dr:]} {
			for i := range added {
				added[i].Namespace = costClientNamespace
			}
		}
	}
	cfgs := costConfigs(snap, c.ownNamespace)
	if c.with {
		efs := costTranslate(b, snap, c.shared)
		cfgs = append(cfgs, envoyFilterConfigs(efs)...)
	}
	s := xds.NewFakeDiscoveryServer(b, xds.FakeOptions{Configs: cfgs})
	if got := s.PushContext().Mesh.GetRootNamespace(); got != RootNamespace {
		b.Fatalf("istiod's root namespace is %q, translation assumed %q", got, RootNamespace)
	}
	took := time.Since(start)
	return s, costMetrics{{took.Seconds(), "setup-s"}, {liveHeapMiB() - before, "setup-MiB"}}
}

// quietIstio keeps istiod's log lines out of the benchmark output, where they would
// split result lines, until b ends. The checks before each loop catch what an
// error line would have said about our EnvoyFilters (a patch istiod dropped).
func quietIstio(b *testing.B) {
	for _, scope := range log.Scopes() {
		level := scope.GetOutputLevel()
		scope.SetOutputLevel(log.NoneLevel)
		b.Cleanup(func() { scope.SetOutputLevel(level) })
	}
}

// costTranslate translates snap as `aeraki generate` does and fails b unless every
// service generated its two EnvoyFilters, or, shared, its inbound one plus the port's
// filter and the route server's cluster.
func costTranslate(b *testing.B, snap *amodel.Snapshot, shared bool) []*amodel.EnvoyFilter {
	b.Helper()
	ctx := generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix}
	want := 2 * len(snap.ServiceEntries)
	if shared {
		ctx.RouteDiscovery = routeServer
		want = len(snap.ServiceEntries) + 2
	}
	tr, err := translate.Translate(ctx, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		b.Fatalf("translating: %v", err)
	}
	if len(tr.Failed) > 0 || len(tr.Filters) != want {
		b.Fatalf("%d EnvoyFilters for %d services, want %d; failed: %v", len(tr.Filters), len(snap.ServiceEntries), want, translate.SortedErrors(tr.Failed))
	}
	return translate.SortedFilters(tr.Filters)
}

// costConfigs is the Istio config of snap as istiod stores it (RedisServices and
// RedisDestinations are ours, not istiod's), plus the client namespace's Sidecar
// importing only that namespace when ownNamespace is set.
func costConfigs(snap *amodel.Snapshot, ownNamespace bool) []config.Config {
	created := time.Now()
	object := func(kind config.GroupVersionKind, o amodel.Object) config.Config {
		return config.Config{
			Meta: config.Meta{GroupVersionKind: kind, Name: o.Name, Namespace: o.Namespace, Annotations: o.Annotations, CreationTimestamp: created},
			Spec: o.Spec.(config.Spec),
		}
	}
	var out []config.Config
	for _, o := range snap.ServiceEntries {
		out = append(out, object(gvk.ServiceEntry, o))
	}
	for _, o := range snap.VirtualServices {
		out = append(out, object(gvk.VirtualService, o))
	}
	for _, o := range snap.DestinationRules {
		out = append(out, object(gvk.DestinationRule, o))
	}
	if ownNamespace {
		out = append(out, object(gvk.Sidecar, amodel.Object{Name: "default", Namespace: costClientNamespace, Spec: &networking.Sidecar{
			Egress: []*networking.IstioEgressListener{{Hosts: []string{"./*"}}},
		}}))
	}
	return out
}

// envoyFilterConfigs are the EnvoyFilters as istiod stores them, created at one time
// (istiod then orders them by name, as it would ours).
func envoyFilterConfigs(efs []*amodel.EnvoyFilter) []config.Config {
	created := time.Now()
	out := make([]config.Config, 0, len(efs))
	for _, ef := range efs {
		out = append(out, config.Config{
			Meta: config.Meta{
				GroupVersionKind: gvk.EnvoyFilter, Name: ef.Name, Namespace: ef.Namespace,
				Labels: ef.Labels, Annotations: ef.Annotations, CreationTimestamp: created,
			},
			Spec: ef.Spec,
		})
	}
	return out
}

// costClient is the client sidecar, in its own namespace.
func costClient(s *xds.FakeDiscoveryServer) *model.Proxy {
	m := &Mesh{Server: s}
	return m.SetupProxy(Proxy{Name: "client", Namespace: costClientNamespace, IP: "10.0.0.99", Labels: map[string]string{"app": "client"}})
}

// checkCostListeners fails b unless the build is the one to measure: every service the
// client sees has its outbound listener with dubbo_proxy (our filter) or tcp_proxy
// (without our filters), the services outside its namespace are absent when its Sidecar
// scopes it, every root-namespace patch reached istiod, and two builds share no
// listener (nothing cached). It reports the listeners and NETWORK_FILTER patches of
// the proxy: the patch loop runs over their product.
func checkCostListeners(b *testing.B, s *xds.FakeDiscoveryServer, proxy *model.Proxy, c costCase) costMetrics {
	b.Helper()
	ls := s.Listeners(proxy)
	visible := []int{c.n}
	if !c.ownNamespace {
		visible = make([]int, 0, c.n+1)
		for i := range c.n + 1 {
			visible = append(visible, i)
		}
	} else if l := Find(ls, costListener(0)); l != nil {
		b.Fatalf("Sidecar importing ./* only, but the client has %s", l.GetName())
	}
	want, other := tcpProxyFilter, dubboplugin.FilterName
	if c.with {
		want, other = other, want
	}
	for _, i := range visible {
		l := Find(ls, costListener(i))
		if l == nil {
			b.Fatalf("no listener %s among %d", costListener(i), len(ls))
		}
		for _, fc := range l.GetFilterChains() {
			if names := FilterNames(fc); !slices.Contains(names, want) || slices.Contains(names, other) {
				b.Fatalf("listener %s chain %q: filters %v, want %s", l.GetName(), fc.GetName(), names, want)
			}
		}
	}
	if again := s.Listeners(proxy); Find(again, costListener(c.n)) == Find(ls, costListener(c.n)) {
		b.Fatalf("two builds returned the same listener %s: a cache is in the way", costListener(c.n))
	}
	patches := proxyPatches(s, proxy, networking.EnvoyFilter_NETWORK_FILTER)
	if wantPatches := costPatches(c); patches != wantPatches {
		b.Fatalf("%d NETWORK_FILTER patches for the client, want %d", patches, wantPatches)
	}
	return costMetrics{{float64(len(ls)), "listeners"}, {float64(patches), "patches"}}
}

// checkCostClusters fails b unless every service's outbound cluster has the
// RedisDestination's max connections (with our filters) or Istio's default (without),
// every root-namespace CLUSTER patch reached istiod, and two builds share no cluster.
func checkCostClusters(b *testing.B, s *xds.FakeDiscoveryServer, proxy *model.Proxy, c costCase) costMetrics {
	b.Helper()
	cs := s.Clusters(proxy)
	byName := make(map[string]*cluster.Cluster, len(cs))
	for _, cl := range cs {
		byName[cl.GetName()] = cl
	}
	for i := range c.n {
		name := amodel.OutboundClusterName(costPort, "", fmt.Sprintf("%s-%d.%s.example", c.shape, i, modelfixture.Namespace))
		cl := byName[name]
		if cl == nil {
			b.Fatalf("no cluster %s among %d", name, len(cs))
		}
		th := cl.GetCircuitBreakers().GetThresholds()
		if got := len(th) > 0 && th[0].GetMaxConnections().GetValue() == costMaxConnections; got != c.with {
			b.Fatalf("cluster %s thresholds %v: RedisDestination in effect %v, want %v", name, th, got, c.with)
		}
	}
	raw, _ := s.ConfigGen.BuildClusters(proxy, &model.PushRequest{Push: s.PushContext()})
	again, _ := s.ConfigGen.BuildClusters(proxy, &model.PushRequest{Push: s.PushContext()})
	if len(raw) == 0 || len(again) == 0 {
		b.Fatal("a build returned no cluster")
	}
	if raw[0].GetResource() == again[0].GetResource() {
		b.Fatalf("two builds returned the same cluster %s: a cache is in the way", raw[0].GetName())
	}
	patches := proxyPatches(s, proxy, networking.EnvoyFilter_CLUSTER)
	if wantPatches := costPatches(c); patches != wantPatches {
		b.Fatalf("%d CLUSTER patches for the client, want %d", patches, wantPatches)
	}
	return costMetrics{{float64(len(cs)), "clusters"}, {float64(patches), "patches"}}
}

// costPatches is the number of root-namespace patches of one kind that apply to the
// client: one per service (outbound EnvoyFilters), one for a shared port, none without
// our filters.
func costPatches(c costCase) int {
	switch {
	case !c.with:
		return 0
	case c.shared:
		return 1
	case c.local:
		return c.n + 1
	default:
		return c.n
	}
}

// proxyPatches counts the EnvoyFilter patches of one kind that istiod applies to proxy.
func proxyPatches(s *xds.FakeDiscoveryServer, proxy *model.Proxy, applyTo networking.EnvoyFilter_ApplyTo) int {
	efw := s.PushContext().EnvoyFilters(proxy)
	if efw == nil {
		return 0
	}
	return len(efw.Patches[applyTo])
}

// costListener is the outbound listener of fixture service i.
func costListener(i int) string {
	return fmt.Sprintf("%s_%d", modelfixture.Address(i), costPort)
}

// liveHeapMiB collects and returns the heap's live objects, in MiB.
func liveHeapMiB() float64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return float64(sample[0].Value.Uint64()) / (1 << 20)
}
