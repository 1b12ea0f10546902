package listeners

import (
	"slices"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// routeServer is the route server of the shared-port tests.
var routeServer = generatortest.RouteDiscovery

// routeModes are the two ways a port's client side is written, for tests that must
// hold in both: a patch per service and address with routes inline, and a shared
// port whose routes the route server serves.
var routeModes = []struct {
	name string
	ctx  generator.Context
}{
	{"own listener patches", generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix}},
	{"shared port", generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix, RouteDiscovery: routeServer}},
}

// sharedMesh: three Dubbo ServiceEntries on port 20880 in two namespaces, one routed
// by a VirtualService, a headless Kubernetes Service of Dubbo on the same port with
// one Pod, and a plain TCP service on port 9000.
const sharedMesh = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop, annotations: {interface: org.example.Orders}}
spec:
  hosts: [orders.shop.example]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-0, namespace: shop}
spec:
  address: 10.0.0.2
  labels: {app: orders, version: v1}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing, namespace: shop, annotations: {interface: org.example.Billing}}
spec:
  hosts: [billing.shop.example]
  addresses: [240.240.0.2]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: billing}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: users, namespace: accounts, annotations: {interface: org.example.Users}}
spec:
  hosts: [users.accounts.example]
  addresses: [240.240.0.3]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: users}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders.shop.example
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.shop.example]
  http:
  - route:
    - destination: {host: orders.shop.example, subset: v1}
      weight: 20
    - destination: {host: orders.shop.example, subset: v2}
      weight: 80
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: raw, namespace: shop}
spec:
  hosts: [raw.shop.example]
  addresses: [240.240.0.9]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
`

// sharedKube is a headless Dubbo Service of port 20880 with one ready Pod.
var sharedKube = headlessYAML("warehouse", "stock", "{interface: org.example.Stock}", "tcp-dubbo", 20880, "10.0.2.5")

// TestSharedPortOnListeners: with a route server, istiod puts one dubbo_proxy that
// fetches the port's routes on every client listener of port 20880 (each VIP's, and
// the headless Service's per-Pod listener), leaves other ports alone, gives every
// sidecar the route server's cluster over mutual TLS, and keeps inbound chains
// inline; the served routes lead to clusters the client has.
func TestSharedPortOnListeners(t *testing.T) {
	kube := KubeObjects(t, sharedKube)
	m := NewIn(t, generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix, RouteDiscovery: routeServer}, plugin.Options{}, sharedMesh, kube...)
	s := m.Server
	routes := m.Routes[patch.SharedObjectName("dubbo", 20880)]
	if routes == nil {
		t.Fatalf("no shared routes; route configurations %v", m.Routes)
	}

	consumer := Proxy{Name: "consumer-0", Namespace: "clients", IP: "10.0.0.1", Labels: map[string]string{"app": "consumer"}}
	out := m.Listeners(consumer)
	var shared []string
	for _, l := range out {
		if l.GetAddress().GetSocketAddress().GetPortValue() != 20880 {
			continue
		}
		shared = append(shared, l.GetName())
		for _, fc := range l.GetFilterChains() {
			checkSharedChain(t, l.GetName(), fc)
		}
	}
	want := []string{"10.0.2.5_20880", "240.240.0.1_20880", "240.240.0.2_20880", "240.240.0.3_20880"}
	if slices.Sort(shared); !slices.Equal(shared, want) {
		t.Errorf("client listeners on port 20880: %v, want %v", shared, want)
	}
	for _, fc := range Find(out, "240.240.0.9_9000").GetFilterChains() {
		if names := FilterNames(fc); !slices.Equal(names, []string{patch.TCPProxyFilter}) {
			t.Errorf("plain TCP listener chain %q: filters %v, want tcp_proxy alone", fc.GetName(), names)
		}
	}

	// The route server's cluster, and every cluster the routes name.
	clusters := map[string]*cluster.Cluster{}
	for _, c := range s.Clusters(m.SetupProxy(consumer)) {
		clusters[c.GetName()] = c
	}
	checkRouteServerCluster(t, clusters[routeServer.Cluster])
	for _, rc := range routes.Config.(*dubbo.MultipleRouteConfiguration).GetRouteConfig() {
		for _, r := range rc.GetRoutes() {
			names := []string{r.GetRoute().GetCluster()}
			for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
				names = append(names, w.GetName())
			}
			for _, name := range names {
				if name != "" && clusters[name] == nil {
					t.Errorf("interface %s routes to %s, a cluster the client does not have", rc.GetInterface(), name)
				}
			}
		}
	}
	if got := len(routes.Config.(*dubbo.MultipleRouteConfiguration).GetRouteConfig()); got != 4 {
		t.Errorf("%d interfaces routed, want 4", got)
	}

	// A provider keeps its inbound chain, routes inline to its workload.
	provider := Proxy{Name: "orders-0", Namespace: "shop", IP: "10.0.0.2", Labels: map[string]string{"app": "orders", "version": "v1"}}
	chains := InboundChains(m.Listeners(provider), 20880)
	if len(chains) == 0 {
		t.Fatal("provider has no inbound chain for 20880")
	}
	checkChains(t, "inbound 20880", chains, dubboplugin.FilterName, true, func(t *testing.T, f *listener.Filter) {
		t.Helper()
		if routes := dubboRoutesOf(t, f, dubboplugin.AnyInterface); len(routes) != 1 || routes[0].GetRoute().GetCluster() != "inbound|20880||" {
			t.Errorf("inbound routes %v, want one to inbound|20880||", routes)
		}
	})
}

// checkSharedChain requires the shared dubbo_proxy, fetching the port's routes from
// the route server, in tcp_proxy's place.
func checkSharedChain(t *testing.T, where string, fc *listener.FilterChain) {
	t.Helper()
	if names := FilterNames(fc); slices.Contains(names, patch.TCPProxyFilter) || !slices.Contains(names, dubboplugin.FilterName) {
		t.Errorf("%s chain %q: filters %v, want dubbo_proxy in tcp_proxy's place", where, fc.GetName(), names)
		return
	}
	f := Filter(fc, dubboplugin.FilterName)
	cfg := &dubbo.DubboProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	drds := cfg.GetDrds()
	grpc := drds.GetConfigSource().GetApiConfigSource().GetGrpcServices()
	if drds.GetRouteConfigName() != patch.SharedObjectName("dubbo", 20880) || len(grpc) != 1 || grpc[0].GetEnvoyGrpc().GetClusterName() != routeServer.Cluster {
		t.Errorf("%s: dubbo_proxy routes %v, want them fetched by name from %s", where, cfg.GetRouteSpecifier(), routeServer.Cluster)
	}
}

// checkRouteServerCluster requires the route server's cluster: HTTP/2 to the server's
// address, TLS with the sidecar's SDS certificate, the server checked against the
// mesh root and its identity.
func checkRouteServerCluster(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	if c == nil {
		t.Fatalf("the client has no cluster %s", routeServer.Cluster)
	}
	addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if addr.GetAddress() != routeServer.Host || addr.GetPortValue() != routeServer.Port {
		t.Errorf("route server cluster reaches %s:%d", addr.GetAddress(), addr.GetPortValue())
	}
	if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
		t.Error("route server cluster is not HTTP/2: gRPC needs it")
	}
	tlsCtx := &tlsv3.UpstreamTlsContext{}
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(tlsCtx); err != nil {
		t.Fatalf("route server cluster has no TLS: %v", err)
	}
	common := tlsCtx.GetCommonTlsContext()
	certs := common.GetTlsCertificateSdsSecretConfigs()
	validation := common.GetCombinedValidationContext()
	sans := validation.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(certs) != 1 || certs[0].GetName() != "default" || validation.GetValidationContextSdsSecretConfig().GetName() != "ROOTCA" ||
		len(sans) != 1 || sans[0].GetMatcher().GetExact() != routeServer.Identities[0] {
		t.Errorf("route server TLS: certificates %v, validation %v", certs, validation)
	}
}
