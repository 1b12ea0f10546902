package rds

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/go-logr/logr/testr"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

const (
	routeType  = "type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration"
	serverName = "aeraki.istio-system.svc"
	nodeID     = "sidecar~10.0.0.7~consumer-7d9f.shop~shop.svc.cluster.local"
	// wait bounds every wait of the tests; none of them sleeps for a fixed time.
	wait = 10 * time.Second
)

// routes is a route configuration of the kind our EnvoyFilters make sidecars
// fetch, with a map field (params_match) so that encoding order matters.
func routes(name, cluster string) *dubbo.MultipleRouteConfiguration {
	params := map[uint32]*dubbo.MethodMatch_ParameterMatchSpecifier{}
	for i, value := range []string{"gold", "silver", "bronze", "tin"} {
		params[uint32(i)] = &dubbo.MethodMatch_ParameterMatchSpecifier{
			ParameterMatchSpecifier: &dubbo.MethodMatch_ParameterMatchSpecifier_ExactMatch{ExactMatch: value},
		}
	}
	return &dubbo.MultipleRouteConfiguration{
		Name: name,
		RouteConfig: []*dubbo.RouteConfiguration{{
			Name:      name,
			Interface: "org.apache.dubbo.samples.basic.api.DemoService",
			Routes: []*dubbo.Route{{
				Match: &dubbo.RouteMatch{Method: &dubbo.MethodMatch{
					Name:        &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: "sayHello"}},
					ParamsMatch: params,
				}},
				Route: &dubbo.RouteAction{ClusterSpecifier: &dubbo.RouteAction_Cluster{Cluster: cluster}},
			}},
		}},
	}
}

// set calls Set with route configurations named by their name.
func set(t *testing.T, s *Server, configs ...*dubbo.MultipleRouteConfiguration) string {
	t.Helper()
	resources := map[string]proto.Message{}
	for _, c := range configs {
		resources[c.GetName()] = c
	}
	if err := s.Set(routeType, resources); err != nil {
		t.Fatal(err)
	}
	version, ok := s.Version(routeType)
	if !ok {
		t.Fatal("no version after Set")
	}
	return version
}

// harness is a Server serving on loopback with throwaway certificates.
type harness struct {
	srv       *Server
	addr      string
	serverCA  *meshcerttest.CA
	rootsFile string
	// serverCert is what the certificate callback returns.
	serverCert atomic.Pointer[tls.Certificate]
	refused    chan string
	acks       chan ack
	stop       func() error
}

type ack struct {
	typeURL  string
	accepted bool
}

// start serves a Server whose roots file holds the mesh CAs.
func start(t *testing.T, mesh ...*meshcerttest.CA) *harness {
	t.Helper()
	h := &harness{
		serverCA:  meshcerttest.NewCA(t, "server"),
		rootsFile: filepath.Join(t.TempDir(), "root-cert.pem"),
		refused:   make(chan string, 64),
		acks:      make(chan ack, 64),
	}
	h.serverCert.Store(h.serverCA.Issue(t, meshcerttest.Leaf{DNS: []string{serverName}, URIs: []string{"spiffe://cluster.local/ns/istio-system/sa/aeraki"}}))
	writeRoots(t, h.rootsFile, mesh...)
	auth := TLS{
		Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return h.serverCert.Load(), nil },
		RootsFile:   h.rootsFile,
	}
	h.srv = New(testr.NewWithOptions(t, testr.Options{Verbosity: 3}), auth, WithObserver(ObserverFuncs{
		// Never block the server on a test that does not read.
		Refused: func(reason string) {
			select {
			case h.refused <- reason:
			default:
			}
		},
		Ack: func(typeURL string, accepted bool) {
			select {
			case h.acks <- ack{typeURL, accepted}:
			default:
			}
		},
	}))
	h.serve(t)
	return h
}

// serve serves h.srv on a new loopback listener until the test ends.
func (h *harness) serve(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, lis) }()
	var once sync.Once
	var err2 error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err2 = <-served:
			case <-time.After(wait):
				t.Error("Serve did not return after its context ended")
			}
		})
		return err2
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// dial connects a client that presents cert (none if nil) and trusts the
// server's CA. The connection closes when the test ends.
func (h *harness) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: h.serverCA.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// sotwClient is a state-of-the-world ADS client that acknowledges every response,
// as Envoy does.
type sotwClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	// typeURL and names are what it subscribes to.
	typeURL string
	names   []string
	// version and nonce are those of the last response.
	version, nonce string
}

// ads opens an ADS stream over a new connection presenting cert.
func (h *harness) ads(t *testing.T, cert *tls.Certificate) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(h.dial(t, cert)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &sotwClient{t: t, stream: stream, typeURL: routeType}
}

// subscribe asks for names (all if none), with the state the client has.
func (c *sotwClient) subscribe(names ...string) {
	c.t.Helper()
	c.names = names
	c.send(nil)
}

func (c *sotwClient) send(nack *status.Status) {
	c.t.Helper()
	err := c.stream.Send(&discovery.DiscoveryRequest{
		Node:          &core.Node{Id: nodeID},
		TypeUrl:       c.typeURL,
		ResourceNames: c.names,
		VersionInfo:   c.version,
		ResponseNonce: c.nonce,
		ErrorDetail:   nack,
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// recv waits for the next response and acknowledges it.
func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	resp := c.next()
	c.version = resp.GetVersionInfo()
	c.send(nil)
	return resp
}

// recvNack waits for the next response and rejects it, keeping the version it had.
func (c *sotwClient) recvNack(message string) *discovery.DiscoveryResponse {
	c.t.Helper()
	resp := c.next()
	c.send(&status.Status{Code: 3, Message: message})
	return resp
}

func (c *sotwClient) next() *discovery.DiscoveryResponse {
	c.t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("waiting for a response: %v", err)
	}
	if resp.GetTypeUrl() != c.typeURL {
		c.t.Fatalf("response of type %s, want %s", resp.GetTypeUrl(), c.typeURL)
	}
	c.nonce = resp.GetNonce()
	return resp
}

// decode returns a response's route configurations by name.
func decode(t *testing.T, resp *discovery.DiscoveryResponse) map[string]proto.Message {
	t.Helper()
	out := map[string]proto.Message{}
	for _, resource := range resp.GetResources() {
		if resource.GetTypeUrl() != routeType {
			t.Fatalf("resource of type %s", resource.GetTypeUrl())
		}
		config := &dubbo.MultipleRouteConfiguration{}
		if err := resource.UnmarshalTo(config); err != nil {
			t.Fatal(err)
		}
		out[config.GetName()] = config
	}
	return out
}

// eventually waits until cond holds, polling, for at most wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectRefused waits until the server refuses a handshake for reason; refusals
// for other reasons (a client's reconnection attempts) are skipped.
func (h *harness) expectRefused(t *testing.T, reason string) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case got := <-h.refused:
			if got == reason {
				return
			}
		case <-timeout:
			t.Fatalf("the server did not refuse a client for %s", reason)
		}
	}
}
