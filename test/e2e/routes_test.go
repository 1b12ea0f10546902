package e2e

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/apimachinery/pkg/util/wait"

	"aeraki.io/aeraki/pkg/patch"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
	"aeraki.io/aeraki/test/controlplane"
)

// aerakiID is the controller's mesh identity: sidecars accept only it as route server.
const aerakiID = "spiffe://cluster.local/ns/" + rootNS + "/sa/" + controlplane.AerakiServiceAccount

// consumerNode is the fake sidecar's node ID.
const consumerNode = "sidecar~10.1.0.1~consumer-0." + appNS + "~" + appNS + ".svc.cluster.local"

// testRouteServer: the binary, as installed, shares the Dubbo port. A sidecar's
// listener names the port's routes and the route server's cluster; a sidecar with a
// workload certificate of the mesh gets every interface's routes from the route
// server; a client without one is refused; a replica that does not lead serves the
// same; after the controller restarts, the sidecar is served the same version, so
// Envoy sees no change and loses nothing; a change reaches every replica.
func testRouteServer(t *testing.T, e *env, bin string) {
	ctx := t.Context()
	a := startAeraki(t, e, bin)
	orders := dubboService{name: "orders", host: "orders.dubbo.example", vip: "240.240.0.91", iface: "org.example.Orders"}
	users := dubboService{name: "users", host: "users.dubbo.example", vip: "240.240.0.92", iface: "org.example.Users"}
	for _, d := range []dubboService{orders, users} {
		e.createDubbo(t, d)
		e.waitDubboFilters(t, d, true)
		e.waitListenerFilter(t, d.vip+"_20880", dubboFilter)
	}

	// What a sidecar's listener asks for, and from where.
	ls, err := e.cp.SidecarListeners(ctx, "10.1.0.1", appNS, map[string]string{"app": "dubbo-consumer"})
	if err != nil {
		t.Fatal(err)
	}
	drds := sharedRoutes(t, ls[orders.vip+"_20880"])
	grpcs := drds.GetConfigSource().GetApiConfigSource().GetGrpcServices()
	if len(grpcs) != 1 || grpcs[0].GetEnvoyGrpc().GetClusterName() != patch.RouteCluster {
		t.Fatalf("the listener fetches its routes from %v, want cluster %s", grpcs, patch.RouteCluster)
	}
	name := drds.GetRouteConfigName()

	// A sidecar of the application namespace, with its certificate from istiod's CA.
	ic, err := e.cp.IstiodClient(ctx, t.TempDir(), appNS, "dubbo-consumer")
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(addr string, want ...string) *discovery.DiscoveryResponse {
		t.Helper()
		dialCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		rc, err := controlplane.DialRoutes(dialCtx, ic, addr, aerakiID)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := rc.Close(); err != nil {
				t.Error(err)
			}
		}()
		var resp *discovery.DiscoveryResponse
		var got []string
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			resp, err = rc.Fetch(ctx, consumerNode, dubboplugin.RoutesTypeURL, []string{name}, 5*time.Second)
			if err != nil {
				t.Logf("fetching routes: %v", err)
				return false, nil
			}
			got = interfaces(t, resp)
			return slices.Equal(got, want), nil
		})
		if err != nil {
			t.Fatalf("route server %s never served %v in %s; last %v", addr, want, name, got)
		}
		return resp
	}
	first := fetch(a.RouteServerAddr, "org.example.Orders", "org.example.Users")

	// A client without a certificate of the mesh gets nothing.
	conn, err := grpc.NewClient(a.RouteServerAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // the client is the one refused here
	})))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		err = stream.Send(&discovery.DiscoveryRequest{TypeUrl: dubboplugin.RoutesTypeURL, ResourceNames: []string{name}})
	}
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil {
		t.Error("a client without a mesh certificate was served")
	}
	_ = conn.Close()

	// A second replica, which does not lead, serves the same routes at the same
	// version: sidecars may reach either.
	follower := startAeraki(t, e, bin)
	if v := fetch(follower.RouteServerAddr, "org.example.Orders", "org.example.Users").GetVersionInfo(); v != first.GetVersionInfo() {
		t.Errorf("the follower serves version %s, the leader %s", v, first.GetVersionInfo())
	}

	// The leader stops (the follower takes over) and starts again: the same routes at
	// the same version.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	again := startAeraki(t, e, bin)
	second := fetch(again.RouteServerAddr, "org.example.Orders", "org.example.Users")
	if second.GetVersionInfo() != first.GetVersionInfo() {
		t.Errorf("after a restart the routes are version %s, before %s: sidecars would reload them", second.GetVersionInfo(), first.GetVersionInfo())
	}

	// A change reaches every replica's routes, the one that does not lead included.
	e.deleteDubbo(t, users)
	e.waitEnvoyFilter(t, appNS, users.filters()[1].Name, false)
	fetch(again.RouteServerAddr, "org.example.Orders")
	fetch(follower.RouteServerAddr, "org.example.Orders")
	e.deleteDubbo(t, orders)
}

// sharedRoutes returns the route discovery of a listener's dubbo_proxy.
func sharedRoutes(t *testing.T, l *listener.Listener) *dubbo.Drds {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() != dubboFilter {
				continue
			}
			cfg := &dubbo.DubboProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.GetDrds() == nil {
				t.Fatalf("listener %s: dubbo_proxy has its routes inline, not fetched: the port is not shared", l.GetName())
			}
			return cfg.GetDrds()
		}
	}
	t.Fatalf("listener %s has no dubbo_proxy", l.GetName())
	return nil
}

// interfaces lists the interfaces of the route configurations in a response.
func interfaces(t *testing.T, resp *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, r := range resp.GetResources() {
		m := &dubbo.MultipleRouteConfiguration{}
		if err := r.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		for _, rc := range m.GetRouteConfig() {
			out = append(out, rc.GetInterface())
		}
	}
	slices.Sort(out)
	return out
}
