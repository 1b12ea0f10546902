package listeners

import (
	"slices"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"

	amodel "aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// interfaceEntries: a Dubbo application exporting two interfaces on 20880, with a
// ServiceEntry per interface (as registry bridges make them), and a third service of
// every interface on the same port.
const interfaceEntries = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop, annotations: {interface: org.example.Orders}}
spec:
  hosts: [orders.shop.example]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: shop}}
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
  workloadSelector: {labels: {app: shop}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: shop}
spec:
  hosts: [legacy.shop.example]
  addresses: [240.240.0.3]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-0, namespace: shop}
spec:
  address: 10.0.0.9
  labels: {app: shop}
`

// TestInterfacesOnListeners: on istiod's own listeners, the workloads behind two
// interface ServiceEntries get one server-side dubbo_proxy accepting every interface,
// from one EnvoyFilter (the older service's), and clients route each interface to its service,
// with or without a shared port; the service of every interface takes the rest.
func TestInterfacesOnListeners(t *testing.T) {
	for _, mode := range routeModes {
		t.Run(mode.name, func(t *testing.T) {
			m := NewIn(t, mode.ctx, plugin.Options{}, interfaceEntries)
			// One EnvoyFilter object for the server side: two would compete for
			// the filter chain.
			var serverSide []string
			for _, ef := range m.EnvoyFilters {
				if ef.Spec.GetWorkloadSelector().GetLabels()["app"] == "shop" {
					serverSide = append(serverSide, ef.Key())
				}
			}
			if len(serverSide) != 1 {
				t.Errorf("server-side EnvoyFilters %v, want one", serverSide)
			}
			server := Proxy{Name: "shop-0", Namespace: "shop", IP: "10.0.0.9", Labels: map[string]string{"app": "shop"}}
			chains := InboundChains(m.Listeners(server), 20880)
			if len(chains) == 0 {
				t.Fatal("the workload has no inbound chain for 20880")
			}
			for _, fc := range chains {
				names := FilterNames(fc)
				if slices.Contains(names, patch.TCPProxyFilter) || countOf(names, dubboplugin.FilterName) != 1 {
					t.Errorf("inbound chain %q: filters %v, want one dubbo_proxy in tcp_proxy's place", fc.GetName(), names)
					continue
				}
				routes := dubboRoutesOf(t, Filter(fc, dubboplugin.FilterName), dubboplugin.AnyInterface)
				if len(routes) != 1 || routes[0].GetRoute().GetCluster() != amodel.InboundClusterName(20880) {
					t.Errorf("inbound routes %v, want every interface to the workload", routes)
				}
			}

			client := Proxy{Name: "client-0", Namespace: "apps", IP: "10.0.1.1", Labels: map[string]string{"app": "client"}}
			out := m.Listeners(client)
			for _, c := range []struct{ vip, iface, host string }{
				{"240.240.0.1", "org.example.Orders", "orders.shop.example"},
				{"240.240.0.2", "org.example.Billing", "billing.shop.example"},
				{"240.240.0.3", dubboplugin.AnyInterface, "legacy.shop.example"},
				// Through another service's listener (shared: every listener of the
				// port routes by interface), an unnamed interface goes to the
				// service of every interface.
				{"240.240.0.1", "org.example.Unlisted", "legacy.shop.example"},
			} {
				want := amodel.OutboundClusterName(20880, "", c.host)
				got := m.routeByInterface(t, out, c.vip+"_20880", c.iface)
				if mode.ctx.RouteDiscovery == nil && c.iface == "org.example.Unlisted" {
					// A listener of its own routes only its service's interfaces.
					continue
				}
				if got != want {
					t.Errorf("calls of %s through %s_20880 go to %q, want %s", c.iface, c.vip, got, want)
				}
			}
		})
	}
}

// routeByInterface returns the cluster that a listener's dubbo_proxy sends a call of
// iface to, as Envoy picks it: the first route configuration whose interface is
// iface or "*", and its first route (every route here matches every method).
func (m *Mesh) routeByInterface(t *testing.T, out []*listener.Listener, name, iface string) string {
	t.Helper()
	l := Find(out, name)
	if l == nil {
		t.Fatalf("no listener %s", name)
	}
	f := Filter(l.GetFilterChains()[0], dubboplugin.FilterName)
	if f == nil {
		t.Fatalf("listener %s has no dubbo_proxy", name)
	}
	dp := &dubbo.DubboProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(dp); err != nil {
		t.Fatal(err)
	}
	rcs := dp.GetMultipleRouteConfig().GetRouteConfig()
	if drds := dp.GetDrds().GetRouteConfigName(); drds != "" {
		rcs = m.Routes[drds].Config.(*dubbo.MultipleRouteConfiguration).GetRouteConfig()
	}
	for _, rc := range rcs {
		if (rc.GetInterface() == iface || rc.GetInterface() == dubboplugin.AnyInterface) && len(rc.GetRoutes()) > 0 {
			return rc.GetRoutes()[0].GetRoute().GetCluster()
		}
	}
	return ""
}

func countOf(names []string, name string) int {
	n := 0
	for _, x := range names {
		if x == name {
			n++
		}
	}
	return n
}
