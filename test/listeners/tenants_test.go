package listeners

import (
	"testing"

	amodel "aeraki.io/aeraki/pkg/model"
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
