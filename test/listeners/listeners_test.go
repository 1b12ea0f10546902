package listeners

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"

	"aeraki.io/aeraki/pkg/envoyfilter"
	amodel "aeraki.io/aeraki/pkg/model"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// protocolCase is one service whose protocol filter must show on a client sidecar's
// outbound listener and on a workload sidecar's virtualInbound chain. A new protocol
// is one more row.
type protocolCase struct {
	name string
	// skip, when set, is why the case cannot pass yet: the missing feature.
	skip string
	// istio is Istio config (namespaces set); kube is Kubernetes YAML (Services, Pods).
	istio, kube string
	// client is a sidecar that calls the service; server is one of its workloads.
	client, server Proxy
	// outbound is the client's listener <vip>_<port>; inboundPort the workload port.
	outbound    string
	inboundPort uint32
	// filter is the protocol's network filter; replacesTCPProxy says it takes
	// tcp_proxy's place rather than sitting in front of it.
	filter           string
	replacesTCPProxy bool
	// checkOutbound and checkInbound look inside the filter's typed config.
	checkOutbound, checkInbound func(t *testing.T, f *listener.Filter)
}

const (
	dubboHost      = "org.apache.dubbo.samples.basic.api.demoservice"
	dubboInterface = "org.apache.dubbo.samples.basic.api.DemoService"
	dubboVIP       = "240.240.0.1"
)

// dubboServiceEntry is served by WorkloadEntries (and so by sidecars) labelled
// app: dubbo-provider in namespace dubbo.
const dubboServiceEntry = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: dubbo-demo
  namespace: dubbo
  annotations:
    interface: ` + dubboInterface + `
spec:
  hosts: [` + dubboHost + `]
  addresses: [` + dubboVIP + `]
  ports:
  - {number: 20880, name: tcp-dubbo, protocol: TCP}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels: {app: dubbo-provider}
---
# Tells istiod that the server sidecar (its IP and labels) is a workload of the
# ServiceEntry: without it the sidecar has no service targets, so no inbound chain.
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: dubbo-provider
  namespace: dubbo
spec:
  address: 10.0.0.2
  labels: {app: dubbo-provider, version: v1}
`

const dubboSubsets = `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dubbo-demo
  namespace: dubbo
spec:
  host: ` + dubboHost + `
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: dubbo-demo
  namespace: dubbo
spec:
  hosts: [` + dubboHost + `]
  http:
  - route:
    - destination: {host: ` + dubboHost + `, subset: v1}
      weight: 20
    - destination: {host: ` + dubboHost + `, subset: v2}
      weight: 80
`

// dubboKubeService is a Kubernetes Service and one Pod it selects. istiod finds the
// server sidecar's Pod by the proxy ID <pod>.<namespace>, then the Services selecting
// the Pod's labels: that gives the inbound chain.
func dubboKubeService(targetPort int) string {
	return `
apiVersion: v1
kind: Service
metadata:
  name: dubbo-svc
  namespace: dubbo-k8s
  annotations:
    interface: ` + dubboInterface + `
spec:
  clusterIP: 10.96.0.20
  selector: {app: dubbo-k8s-provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: ` + strconv.Itoa(targetPort) + `, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata:
  name: dubbo-k8s-provider-0
  namespace: dubbo-k8s
  labels: {app: dubbo-k8s-provider}
spec:
  containers:
  - name: app
    image: provider
    ports:
    - {containerPort: ` + strconv.Itoa(targetPort) + `}
status:
  phase: Running
  podIP: 10.0.1.2
  podIPs: [{ip: 10.0.1.2}]
  conditions:
  - {type: Ready, status: "True"}
`
}

var (
	client       = Proxy{Name: "consumer-0", Namespace: "dubbo-client", IP: "10.0.0.1", Labels: map[string]string{"app": "dubbo-consumer"}}
	seProvider   = Proxy{Name: "dubbo-provider-0", Namespace: "dubbo", IP: "10.0.0.2", Labels: map[string]string{"app": "dubbo-provider", "version": "v1"}}
	kubeProvider = Proxy{Name: "dubbo-k8s-provider-0", Namespace: "dubbo-k8s", IP: "10.0.1.2", Labels: map[string]string{"app": "dubbo-k8s-provider"}}
)

func protocolCases() []protocolCase {
	kubeHost := "dubbo-svc.dubbo-k8s.svc.cluster.local"
	return []protocolCase{
		{
			name:   "dubbo ServiceEntry",
			istio:  dubboServiceEntry,
			client: client, server: seProvider,
			outbound: dubboVIP + "_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", dubboHost)),
			checkInbound:  dubboCatchAll(amodel.InboundClusterName(20880)),
		},
		{
			name:   "dubbo Kubernetes Service",
			kube:   dubboKubeService(20880),
			client: client, server: kubeProvider,
			outbound: "10.96.0.20_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", kubeHost)),
			checkInbound:  dubboCatchAll(amodel.InboundClusterName(20880)),
		},
		{
			// The inbound chain is the target port's, which only the Service knows
			// (istiod's synthetic ServiceEntry has no target ports).
			name:   "dubbo Kubernetes Service with a targetPort",
			kube:   dubboKubeService(20881),
			client: client, server: kubeProvider,
			outbound: "10.96.0.20_20880", inboundPort: 20881,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", kubeHost)),
			checkInbound:  dubboCatchAll(amodel.InboundClusterName(20881)),
		},
		{
			name:   "dubbo VirtualService 20/80 over subsets",
			istio:  dubboServiceEntry + dubboSubsets,
			client: client, server: seProvider,
			outbound: dubboVIP + "_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboWeighted(dubboHost, 20880, map[string]uint32{"v1": 20, "v2": 80}),
			// The server side takes everything to its workload.
			checkInbound: dubboCatchAll(amodel.InboundClusterName(20880)),
		},
	}
}

// TestProtocolFiltersOnListeners feeds each case's config and its generated
// EnvoyFilters to istiod and checks the listeners it builds for a client sidecar and
// for a workload of the service.
func TestProtocolFiltersOnListeners(t *testing.T) {
	for _, c := range protocolCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			kube := KubeObjects(t, c.kube)
			m := New(t, c.istio, kube...)
			if len(m.EnvoyFilters) == 0 {
				t.Fatal("nothing generated")
			}
			out := m.Listeners(c.client)
			in := m.Listeners(c.server)

			// Outbound: the client's <vip>_<port> listener.
			l := Find(out, c.outbound)
			if l == nil {
				t.Fatalf("client has no listener %s; listeners %v", c.outbound, Names(out))
			}
			checkChains(t, "outbound "+c.outbound, l.GetFilterChains(), c.filter, c.replacesTCPProxy, c.checkOutbound)

			// Inbound: the server's virtualInbound chains for the workload port.
			checkChains(t, "inbound port "+strconv.Itoa(int(c.inboundPort)), InboundChains(in, c.inboundPort), c.filter, c.replacesTCPProxy, c.checkInbound)

			// The client is not a workload of the service: its inbound side is untouched.
			for _, fc := range Find(out, VirtualInbound).GetFilterChains() {
				if Filter(fc, c.filter) != nil {
					t.Errorf("client's virtualInbound chain %q carries %s", fc.GetName(), c.filter)
				}
			}
			// And every patch of every generated EnvoyFilter took effect.
			m.CheckApplied(t, out, in)

			// Control: the same config without our EnvoyFilters, as if istiod had
			// dropped every patch. The listeners exist with tcp_proxy, and
			// CheckApplied reports each patch.
			plain := &Mesh{Server: Istiod(t, c.istio, kube...), EnvoyFilters: m.EnvoyFilters}
			plainOut, plainIn := plain.Listeners(c.client), plain.Listeners(c.server)
			for _, fc := range append(Find(plainOut, c.outbound).GetFilterChains(), InboundChains(plainIn, c.inboundPort)...) {
				if Filter(fc, envoyfilter.TCPProxyFilter) == nil {
					t.Errorf("without EnvoyFilters, chain %q has no tcp_proxy: filters %v", fc.GetName(), FilterNames(fc))
				}
			}
			rec := &recorder{TB: t}
			plain.CheckApplied(rec, plainOut, plainIn)
			for _, ef := range m.EnvoyFilters {
				if !rec.mentions(ef.Key()) {
					t.Errorf("CheckApplied did not notice that EnvoyFilter %s was not applied; it reported %q", ef.Key(), rec.errs)
				}
			}
		})
	}
}

// checkChains requires at least one chain, the protocol filter in each (and tcp_proxy
// in none when the filter replaces it), and runs check on each filter.
func checkChains(t *testing.T, where string, chains []*listener.FilterChain, filter string, replaces bool, check func(*testing.T, *listener.Filter)) {
	t.Helper()
	if len(chains) == 0 {
		t.Errorf("%s: no filter chains", where)
		return
	}
	for _, fc := range chains {
		f := Filter(fc, filter)
		if f == nil {
			t.Errorf("%s: chain %q lacks %s: filters %v", where, fc.GetName(), filter, FilterNames(fc))
			continue
		}
		if replaces && Filter(fc, envoyfilter.TCPProxyFilter) != nil {
			t.Errorf("%s: chain %q still has tcp_proxy: filters %v", where, fc.GetName(), FilterNames(fc))
		}
		if err := ValidateFilter(f); err != nil {
			t.Errorf("%s: chain %q: Envoy would reject the filter: %v", where, fc.GetName(), err)
		}
		if check != nil {
			check(t, f)
		}
	}
}

// dubboRoutes decodes a dubbo_proxy filter and returns the routes of its one route
// configuration, after checking the interface.
func dubboRoutes(t *testing.T, f *listener.Filter) []*dubbo.Route {
	t.Helper()
	dp := &dubbo.DubboProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(dp); err != nil {
		t.Fatalf("decoding %s: %v", f.GetName(), err)
	}
	rcs := dp.GetMultipleRouteConfig().GetRouteConfig()
	if len(rcs) != 1 {
		t.Fatalf("DubboProxy has %d route configurations, want 1: %v", len(rcs), dp)
	}
	if rcs[0].GetInterface() != dubboInterface {
		t.Errorf("interface %q, want %q", rcs[0].GetInterface(), dubboInterface)
	}
	return rcs[0].GetRoutes()
}

// dubboCatchAll wants exactly one route, to cluster.
func dubboCatchAll(cluster string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		routes := dubboRoutes(t, f)
		if len(routes) != 1 || routes[0].GetRoute().GetCluster() != cluster {
			t.Errorf("routes %v, want one route to %s", routes, cluster)
		}
	}
}

// dubboWeighted wants a first route that splits over the host's subsets with the
// given weights, and a last route to the host's own cluster.
func dubboWeighted(host string, port uint32, weights map[string]uint32) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		routes := dubboRoutes(t, f)
		if len(routes) == 0 {
			t.Fatal("no routes")
		}
		got := map[string]uint32{}
		for _, c := range routes[0].GetRoute().GetWeightedClusters().GetClusters() {
			got[c.GetName()] = c.GetWeight().GetValue()
		}
		want := map[string]uint32{}
		for subset, w := range weights {
			want[amodel.OutboundClusterName(port, subset, host)] = w
		}
		if len(got) != len(want) {
			t.Errorf("first route's weighted clusters %v, want %v", got, want)
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("weighted cluster %s: weight %d, want %d (all: %v)", name, got[name], w, got)
			}
		}
		if last := routes[len(routes)-1].GetRoute().GetCluster(); last != amodel.OutboundClusterName(port, "", host) {
			t.Errorf("last route goes to %q, want the catch-all %s", last, amodel.OutboundClusterName(port, "", host))
		}
	}
}

// recorder collects the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) mentions(s string) bool {
	for _, e := range r.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestSyntheticServiceEntryMatchesIstiod holds our reading of a Kubernetes Service
// (used by generate and the golden tests) to istiod's own conversion.
func TestSyntheticServiceEntryMatchesIstiod(t *testing.T) {
	for _, svc := range KubeObjects(t, `apiVersion: v1
kind: Service
metadata: {name: provider, namespace: dubbo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: 20881}
  - {name: http-web, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: dubbo}
spec:
  clusterIP: None
  selector: {app: headless}
  ports:
  - {name: tcp-dubbo, port: 20880}
`) {
		svc := svc.(*corev1.Service)
		want := IstiodServiceEntry(svc)
		got := amodel.SyntheticServiceEntry(svc, DomainSuffix)
		if got.Name != want.Name || got.Namespace != want.Namespace {
			t.Errorf("%s: name %s/%s, istiod %s/%s", svc.Name, got.Namespace, got.Name, want.Namespace, want.Name)
		}
		if diff := cmp.Diff(want.Spec, got.Spec, protocmp.Transform()); diff != "" {
			t.Errorf("%s: spec differs from istiod's (-istiod +ours):\n%s", svc.Name, diff)
		}
	}
}
