package listeners

import (
	"fmt"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"

	amodel "aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/plugin"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// tenants: team shop's Dubbo service with its own VirtualService, and team attacker's
// namespace with a service of its own and two VirtualServices that name every host of
// the mesh by a wildcard: one exported to its own namespace only, one, older, to every
// namespace.
const tenants = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop, annotations: {interface: org.example.Orders}}
spec:
  hosts: [orders.shop.svc.cluster.local]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sink, namespace: attacker, annotations: {interface: org.example.Sink}}
spec:
  hosts: [sink.attacker.svc.cluster.local]
  addresses: [240.240.0.2]
  ports: [{number: 20881, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: steal-local, namespace: attacker, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: ["*.svc.cluster.local"]
  exportTo: ["."]
  http:
  - route: [{destination: {host: sink.attacker.svc.cluster.local, port: {number: 20881}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: steal-all, namespace: attacker, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: ["*.shop.svc.cluster.local"]
  http:
  - route: [{destination: {host: sink.attacker.svc.cluster.local, port: {number: 20881}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop, creationTimestamp: "2026-06-01T00:00:00Z"}
spec:
  hosts: [orders.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: orders.shop.svc.cluster.local}}]
`

// TestAnotherNamespaceCannotSteer: on istiod's own listeners, the clients of every
// namespace, the wildcard's own included, reach orders through its own
// VirtualService: the exact host beats the older wildcard exported to every
// namespace, and the wildcard exported to its own namespace is not applied
// mesh-wide.
func TestAnotherNamespaceCannotSteer(t *testing.T) {
	m := New(t, tenants)
	want := amodel.OutboundClusterName(20880, "", "orders.shop.svc.cluster.local")
	for _, client := range []Proxy{
		{Name: "client-0", Namespace: "clients", IP: "10.0.0.1", Labels: map[string]string{"app": "client"}},
		{Name: "attacker-0", Namespace: "attacker", IP: "10.0.0.2", Labels: map[string]string{"app": "attacker"}},
	} {
		l := Find(m.Listeners(client), "240.240.0.1_20880")
		if l == nil {
			t.Fatalf("%s has no listener for orders", client.Namespace)
		}
		for _, fc := range l.GetFilterChains() {
			f := Filter(fc, "envoy.filters.network.dubbo_proxy")
			if f == nil {
				t.Fatalf("%s: orders' listener has no dubbo_proxy: %v", client.Namespace, FilterNames(fc))
			}
			routes := dubboRoutesOf(t, f, "org.example.Orders")
			for _, r := range routes {
				if c := r.GetRoute().GetCluster(); c != want {
					t.Errorf("%s: orders' Dubbo calls go to %s, want %s", client.Namespace, c, want)
				}
			}
		}
	}
}

// privateRedis is a Redis service that only its own namespace sees, with a password
// its clients' sidecars check.
const privateRedis = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: shop}
spec:
  hosts: [cache.shop.svc.cluster.local]
  addresses: [240.240.0.30]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  exportTo: ["."]
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: shop}
spec:
  host: [cache]
  settings:
    auth: {plain: {password: shop-only}}
`

// TestPrivateServiceConfigStaysInItsNamespace: the outbound EnvoyFilter of a service
// exported to its own namespace only is in that namespace, so its config (here a
// Redis password) reaches that namespace's sidecars and no others; those sidecars'
// listeners carry it.
func TestPrivateServiceConfigStaysInItsNamespace(t *testing.T) {
	m := New(t, privateRedis)
	for _, ef := range m.EnvoyFilters {
		if ef.Namespace != "shop" {
			t.Errorf("EnvoyFilter %s of a service only namespace shop sees is outside it", ef.Key())
		}
	}
	shop := Proxy{Name: "client-0", Namespace: "shop", IP: "10.0.0.5", Labels: map[string]string{"app": "client"}}
	l := Find(m.Listeners(shop), "240.240.0.30_6379")
	if l == nil {
		t.Fatal("a sidecar of namespace shop has no listener for the cache")
	}
	for _, fc := range l.GetFilterChains() {
		if Filter(fc, "envoy.filters.network.redis_proxy") == nil {
			t.Errorf("shop's sidecar: the cache's listener has no redis_proxy: %v", FilterNames(fc))
		}
	}
	other := Proxy{Name: "client-0", Namespace: "elsewhere", IP: "10.0.0.6", Labels: map[string]string{"app": "client"}}
	if l := Find(m.Listeners(other), "240.240.0.30_6379"); l != nil {
		t.Errorf("another namespace's sidecar has the private cache's listener")
	}
	if efw := m.Server.PushContext().EnvoyFilters(m.SetupProxy(other)); efw != nil && len(efw.Patches) > 0 {
		t.Errorf("another namespace's sidecar gets %d kinds of patches of a private service", len(efw.Patches))
	}
}

// views: orders has a VirtualService of its own for every namespace (to v1). Team
// canary's own, older one sends canary's calls to v2; team late's own, newer one
// loses to the older one; team attacker's wildcard, exported to attacker only, is
// beaten by orders' exact host but takes stock, which has no VirtualService, for
// attacker's sidecars alone.
const views = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop, annotations: {interface: org.example.Orders}}
spec:
  hosts: [orders.shop.svc.cluster.local]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: stock, namespace: warehouse, annotations: {interface: org.example.Stock}}
spec:
  hosts: [stock.warehouse.svc.cluster.local]
  addresses: [240.240.0.3]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sink, namespace: attacker, annotations: {interface: org.example.Sink}}
spec:
  hosts: [sink.attacker.svc.cluster.local]
  addresses: [240.240.0.2]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders.shop.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop, creationTimestamp: "2026-06-01T00:00:00Z"}
spec:
  hosts: [orders.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: orders.shop.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders-canary, namespace: canary, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: [orders.shop.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: orders.shop.svc.cluster.local, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders-late, namespace: late, creationTimestamp: "2026-09-01T00:00:00Z"}
spec:
  hosts: [orders.shop.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: orders.shop.svc.cluster.local, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: steal-local, namespace: attacker, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: ["*.svc.cluster.local"]
  exportTo: ["."]
  http:
  - route: [{destination: {host: sink.attacker.svc.cluster.local}}]
`

// TestNamespaceViews: on istiod's own listeners, with and without the shared port,
// each namespace's sidecars route as Istio would route HTTP for them: a rule
// exported to one namespace changes that namespace's clients only, and among the
// rules a namespace sees, the exact host and then the oldest win.
func TestNamespaceViews(t *testing.T) {
	orders := func(subset string) string {
		return amodel.OutboundClusterName(20880, subset, "orders.shop.svc.cluster.local")
	}
	stock := amodel.OutboundClusterName(20880, "", "stock.warehouse.svc.cluster.local")
	sink := amodel.OutboundClusterName(20880, "", "sink.attacker.svc.cluster.local")
	want := []struct {
		namespace     string
		orders, stock string
	}{
		{"clients", orders("v1"), stock},
		{"shop", orders("v1"), stock},
		{"canary", orders("v2"), stock},
		{"late", orders("v1"), stock},
		{"attacker", orders("v1"), sink},
	}
	for _, mode := range routeModes {
		t.Run(mode.name, func(t *testing.T) {
			m := NewIn(t, mode.ctx, plugin.Options{}, views)
			for i, w := range want {
				client := Proxy{Name: "client-0", Namespace: w.namespace, IP: fmt.Sprintf("10.0.1.%d", i+1), Labels: map[string]string{"app": "client"}}
				out := m.Listeners(client)
				for _, c := range []struct{ vip, iface, want string }{
					{"240.240.0.1", "org.example.Orders", w.orders},
					{"240.240.0.3", "org.example.Stock", w.stock},
				} {
					for _, got := range m.dubboFirstClusters(t, out, c.vip+"_20880", c.iface) {
						if got != c.want {
							t.Errorf("namespace %s: calls of %s go to %s, want %s", w.namespace, c.iface, got, c.want)
						}
					}
				}
			}
		})
	}
}

// dubboFirstClusters returns, for each chain of a listener, the cluster that its
// dubbo_proxy's first route of iface (which every route here matches every call of)
// sends calls to, from its inline routes or from the shared routes it names.
func (m *Mesh) dubboFirstClusters(t *testing.T, out []*listener.Listener, name, iface string) []string {
	t.Helper()
	l := Find(out, name)
	if l == nil {
		t.Fatalf("no listener %s", name)
	}
	var clusters []string
	for _, fc := range l.GetFilterChains() {
		f := Filter(fc, dubboplugin.FilterName)
		if f == nil {
			t.Fatalf("listener %s has no dubbo_proxy: %v", name, FilterNames(fc))
		}
		dp := &dubbo.DubboProxy{}
		if err := f.GetTypedConfig().UnmarshalTo(dp); err != nil {
			t.Fatal(err)
		}
		rcs := dp.GetMultipleRouteConfig().GetRouteConfig()
		if drds := dp.GetDrds().GetRouteConfigName(); drds != "" {
			shared, ok := m.Routes[drds].Config.(*dubbo.MultipleRouteConfiguration)
			if !ok {
				t.Fatalf("listener %s names routes %q, which are not served", name, drds)
			}
			rcs = shared.GetRouteConfig()
		}
		for _, rc := range rcs {
			if rc.GetInterface() != iface {
				continue
			}
			if len(rc.GetRoutes()) > 0 {
				clusters = append(clusters, rc.GetRoutes()[0].GetRoute().GetCluster())
			}
		}
	}
	if len(clusters) == 0 {
		t.Fatalf("listener %s has no routes for %s", name, iface)
	}
	return clusters
}
