package rds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// A client gets the resources it names after Set, at the version Set announced.
func TestServesResourcesAfterSet(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	a, b := routes("dubbo-20880", "outbound|20880||demo"), routes("dubbo-20881", "outbound|20881||demo")
	version := set(t, h.srv, a, b)

	c := h.ads(t, mesh.Workload(t, "shop", "consumer"))
	c.subscribe("dubbo-20880")
	resp := c.recv()

	if resp.GetVersionInfo() != version {
		t.Errorf("version %q, want %q", resp.GetVersionInfo(), version)
	}
	want := map[string]proto.Message{"dubbo-20880": a}
	if diff := cmp.Diff(want, decode(t, resp), protocmp.Transform()); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	// The stream was recorded when it opened and named when its first request came.
	wantStreams := []Stream{{Peer: "spiffe://cluster.local/ns/shop/sa/consumer", Node: nodeID}}
	if diff := cmp.Diff(wantStreams, h.srv.Streams(), cmpStreams); diff != "" {
		t.Errorf("streams (-want +got):\n%s", diff)
	}
	if n := h.srv.ConnectedStreams(); n != 1 {
		t.Errorf("%d connected streams, want 1", n)
	}
}

// The client's address is a free port: compare the rest.
var cmpStreams = cmp.Transformer("noAddress", func(s Stream) Stream {
	s.Address = ""
	return s
})

// Before the first Set of a type, a request for it gets nothing, even from a
// client that reconnects with a version (which the cache alone would answer with
// an empty response) and even when another type was set; the first Set answers it.
func TestHoldsRequestsUntilFirstSet(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	other := "type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.RouteConfiguration"
	if err := h.srv.Set(other, map[string]proto.Message{"r": &dubbo.RouteConfiguration{Name: "r"}}); err != nil {
		t.Fatal(err)
	}

	c := h.ads(t, mesh.Workload(t, "shop", "consumer"))
	c.version = "version-of-another-replica"
	c.subscribe("dubbo-20880")
	eventually(t, "the request is held", func() bool { return h.srv.cache.heldCount(routeType) == 1 })
	if _, ok := h.srv.Version(routeType); ok {
		t.Fatal("a version before the first Set")
	}

	a := routes("dubbo-20880", "outbound|20880||demo")
	version := set(t, h.srv, a)
	// Had anything been sent before Set, it would come first.
	resp := c.recv()
	if resp.GetVersionInfo() != version {
		t.Errorf("first response has version %q, want %q", resp.GetVersionInfo(), version)
	}
	if diff := cmp.Diff(map[string]proto.Message{"dubbo-20880": a}, decode(t, resp), protocmp.Transform()); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	if n := h.srv.cache.heldCount(routeType); n != 0 {
		t.Errorf("%d watches still held", n)
	}
}

// After the first Set the state-of-the-world rules of go-control-plane's snapshot
// cache apply: a response carries the requested names that exist and only those.
func TestStateOfTheWorldSemantics(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	a, b := routes("a", "outbound|1||a"), routes("b", "outbound|2||b")
	version := set(t, h.srv, a, b)
	cert := mesh.Workload(t, "shop", "consumer")

	for _, tc := range []struct {
		name  string
		names []string
		want  map[string]proto.Message
	}{
		{"a missing name is absent", []string{"a", "missing"}, map[string]proto.Message{"a": a}},
		{"only missing names: an empty response with the version", []string{"missing"}, map[string]proto.Message{}},
		{"no names is every resource", nil, map[string]proto.Message{"a": a, "b": b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.ads(t, cert)
			c.subscribe(tc.names...)
			resp := c.recv()
			if resp.GetVersionInfo() != version {
				t.Errorf("version %q, want %q", resp.GetVersionInfo(), version)
			}
			if diff := cmp.Diff(tc.want, decode(t, resp), protocmp.Transform()); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a removed resource is absent from the next response", func(t *testing.T) {
		c := h.ads(t, cert)
		c.subscribe("a", "b")
		c.recv()
		next := set(t, h.srv, a)
		resp := c.recv()
		if resp.GetVersionInfo() != next {
			t.Errorf("version %q, want %q", resp.GetVersionInfo(), next)
		}
		if diff := cmp.Diff(map[string]proto.Message{"a": a}, decode(t, resp), protocmp.Transform()); diff != "" {
			t.Errorf("resources (-want +got):\n%s", diff)
		}
	})
}

// A Set that changes content reaches a connected client; a Set of the same
// content (new messages, maps filled in another order) has the same version and
// sends nothing.
func TestUpdatesOnlyOnChange(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	v1 := set(t, h.srv, routes("a", "outbound|1||v1"))

	c := h.ads(t, mesh.Workload(t, "shop", "consumer"))
	c.subscribe("a")
	if got := c.recv().GetVersionInfo(); got != v1 {
		t.Fatalf("version %q, want %q", got, v1)
	}

	if again := set(t, h.srv, routes("a", "outbound|1||v1")); again != v1 {
		t.Errorf("same content: version %q, want %q", again, v1)
	}
	changed := routes("a", "outbound|1||v2")
	v2 := set(t, h.srv, changed)
	if v2 == v1 {
		t.Fatal("changed content kept its version")
	}
	// Had the same-content Set sent anything, it would come first.
	resp := c.recv()
	if resp.GetVersionInfo() != v2 {
		t.Errorf("version %q, want %q", resp.GetVersionInfo(), v2)
	}
	if diff := cmp.Diff(map[string]proto.Message{"a": changed}, decode(t, resp), protocmp.Transform()); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

// Another Server (another replica, or this one restarted) with the same content
// announces the same version to a client that reconnects to it.
func TestSameContentSameVersionAcrossServers(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	first, second := start(t, mesh), start(t, mesh)
	v1 := set(t, first.srv, routes("a", "outbound|1||a"), routes("b", "outbound|2||b"))
	v2 := set(t, second.srv, routes("b", "outbound|2||b"), routes("a", "outbound|1||a"))
	if v1 != v2 {
		t.Fatalf("versions %q and %q for the same content", v1, v2)
	}

	cert := mesh.Workload(t, "shop", "consumer")
	c := first.ads(t, cert)
	c.subscribe("a")
	had := c.recv()

	// Reconnecting, Envoy sends the version it has; the resend is the same.
	reconnected := second.ads(t, cert)
	reconnected.version = had.GetVersionInfo()
	reconnected.subscribe("a")
	got := reconnected.recv()
	if got.GetVersionInfo() != had.GetVersionInfo() {
		t.Errorf("version %q after reconnecting, want %q", got.GetVersionInfo(), had.GetVersionInfo())
	}
	if diff := cmp.Diff(decode(t, had), decode(t, got), protocmp.Transform()); diff != "" {
		t.Errorf("resources after reconnecting (-before +after):\n%s", diff)
	}
}

// A delta client gets the resource with its own version once the type is set,
// nothing before (not even removals of what it says it has), and is told of a
// removal.
func TestDelta(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(h.dial(t, mesh.Workload(t, "shop", "consumer"))).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		req.TypeUrl = routeType
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	send(&discovery.DeltaDiscoveryRequest{
		Node:                    &core.Node{Id: nodeID},
		ResourceNamesSubscribe:  []string{"a"},
		InitialResourceVersions: map[string]string{"a": "version-of-another-replica"},
	})
	eventually(t, "the delta request is held", func() bool { return h.srv.cache.heldCount(routeType) == 1 })

	a := routes("a", "outbound|1||a")
	version := set(t, h.srv, a, routes("b", "outbound|2||b"))
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSystemVersionInfo() != version {
		t.Errorf("system version %q, want %q", resp.GetSystemVersionInfo(), version)
	}
	if len(resp.GetResources()) != 1 || len(resp.GetRemovedResources()) != 0 {
		t.Fatalf("got %d resources and removals %v, want a alone", len(resp.GetResources()), resp.GetRemovedResources())
	}
	got := resp.GetResources()[0]
	wantVersion, err := resourceVersion(a)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetName() != "a" || got.GetVersion() != wantVersion {
		t.Errorf("resource %q at %q, want a at %q", got.GetName(), got.GetVersion(), wantVersion)
	}
	config := &dubbo.MultipleRouteConfiguration{}
	if err := got.GetResource().UnmarshalTo(config); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, config, protocmp.Transform()); diff != "" {
		t.Errorf("resource (-want +got):\n%s", diff)
	}
	send(&discovery.DeltaDiscoveryRequest{ResponseNonce: resp.GetNonce()})

	set(t, h.srv, routes("b", "outbound|2||b"))
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a"}, resp.GetRemovedResources()); diff != "" || len(resp.GetResources()) != 0 {
		t.Errorf("removals (-want +got):\n%s, %d resources", diff, len(resp.GetResources()))
	}
}

// A NACK and an ACK reach the observer, once per response.
func TestObservesAcks(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	set(t, h.srv, routes("a", "outbound|1||v1"))
	c := h.ads(t, mesh.Workload(t, "shop", "consumer"))
	c.subscribe("a")
	c.recvNack("dubbo_proxy: unknown cluster")
	if got := <-h.acks; got != (ack{routeType, false}) {
		t.Errorf("got %+v, want a NACK", got)
	}
	set(t, h.srv, routes("a", "outbound|1||v2"))
	c.recv()
	if got := <-h.acks; got != (ack{routeType, true}) {
		t.Errorf("got %+v, want an ACK", got)
	}
}

// Serve ends the streams and returns when its context ends.
func TestStopsWithContext(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	set(t, h.srv, routes("a", "outbound|1||a"))
	c := h.ads(t, mesh.Workload(t, "shop", "consumer"))
	c.subscribe("a")
	c.recv()

	if err := h.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := c.stream.Recv(); err == nil {
		t.Error("the stream is still open after Serve returned")
	}
	if n := h.srv.ConnectedStreams(); n != 0 {
		t.Errorf("%d streams connected after Serve returned", n)
	}
}

// There is no plaintext mode: Serve refuses to start without both halves of TLS.
func TestServeRequiresTLS(t *testing.T) {
	for name, auth := range map[string]TLS{
		"no certificate": {RootsFile: "root-cert.pem"},
		"no roots":       {Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }},
	} {
		t.Run(name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := New(testr.New(t), auth).Serve(context.Background(), lis); err == nil {
				t.Error("Serve started")
			}
			if _, err := net.Dial("tcp", lis.Addr().String()); err == nil {
				t.Error("the listener is still open")
			}
		})
	}
}

// refused asserts that a client presenting cert is refused for reason.
func refused(t *testing.T, h *harness, cert *tls.Certificate, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn := h.dial(t, cert)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		if err = stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: nodeID}, TypeUrl: routeType}); err == nil {
			_, err = stream.Recv()
		}
	}
	if grpcstatus.Code(err) != codes.Unavailable {
		t.Errorf("got %v, want the connection refused (Unavailable)", err)
	}
	_ = conn.Close()
	h.expectRefused(t, reason)
}

// accepted asserts that a client presenting cert gets the resources.
func accepted(t *testing.T, h *harness, cert *tls.Certificate) {
	t.Helper()
	c := h.ads(t, cert)
	c.subscribe("a")
	if len(c.recv().GetResources()) != 1 {
		t.Error("no resource")
	}
}

// Only clients with a certificate of the mesh that carries a SPIFFE ID get in.
func TestRefusesClients(t *testing.T) {
	mesh, other := meshcerttest.NewCA(t, "mesh"), meshcerttest.NewCA(t, "other")
	h := start(t, mesh)
	set(t, h.srv, routes("a", "outbound|1||a"))
	accepted(t, h, mesh.Workload(t, "shop", "consumer"))

	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		reason string
	}{
		{"no client certificate", nil, ReasonNoCertificate},
		{"another CA", other.Workload(t, "shop", "consumer"), ReasonUntrusted},
		{"not for client authentication", mesh.Issue(t, meshcerttest.Leaf{URIs: []string{"spiffe://cluster.local/ns/shop/sa/consumer"}, Usage: x509.ExtKeyUsageServerAuth}), ReasonUntrusted},
		{"no SPIFFE ID", mesh.Issue(t, meshcerttest.Leaf{DNS: []string{"consumer.shop.svc"}}), ReasonNoSPIFFEID},
		{"not a SPIFFE URI", mesh.Issue(t, meshcerttest.Leaf{URIs: []string{"https://consumer.shop.svc/"}}), ReasonNoSPIFFEID},
	} {
		t.Run(tc.name, func(t *testing.T) { refused(t, h, tc.cert, tc.reason) })
	}
}

// The roots file is read at every handshake: replaced by another CA's root, the
// old clients are refused and the new ones accepted; missing, every client is.
func TestRereadsRootsFile(t *testing.T) {
	meshA, meshB := meshcerttest.NewCA(t, "mesh A"), meshcerttest.NewCA(t, "mesh B")
	h := start(t, meshA)
	set(t, h.srv, routes("a", "outbound|1||a"))
	oldClient, newClient := meshA.Workload(t, "shop", "consumer"), meshB.Workload(t, "billing", "invoicer")
	accepted(t, h, oldClient)

	writeRoots(t, h.rootsFile, meshB)
	refused(t, h, oldClient, ReasonUntrusted)
	accepted(t, h, newClient)

	writeRoots(t, h.rootsFile, meshA, meshB) // both during a rotation
	accepted(t, h, oldClient)
	accepted(t, h, newClient)

	if err := os.Remove(h.rootsFile); err != nil {
		t.Fatal(err)
	}
	refused(t, h, newClient, ReasonRoots)
}

// The server certificate comes from the callback at every handshake, so a
// rotated one is served to new connections.
func TestServerCertificateFromCallback(t *testing.T) {
	mesh := meshcerttest.NewCA(t, "mesh")
	h := start(t, mesh)
	set(t, h.srv, routes("a", "outbound|1||a"))
	client := mesh.Workload(t, "shop", "consumer")

	for range 2 {
		want := h.serverCA.Issue(t, meshcerttest.Leaf{DNS: []string{serverName}})
		h.serverCert.Store(want)
		var served *x509.Certificate
		conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: h.serverCA.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{*client},
			VerifyConnection: func(state tls.ConnectionState) error {
				served = state.PeerCertificates[0]
				return nil
			},
		})))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err == nil {
			if err = stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: nodeID}, TypeUrl: routeType}); err == nil {
				_, err = stream.Recv()
			}
		}
		cancel()
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The handshake happened before the response: served is set.
		if served == nil || served.SerialNumber.Cmp(want.Leaf.SerialNumber) != 0 {
			t.Errorf("served certificate %v, want serial %v", served, want.Leaf.SerialNumber)
		}
	}
}
