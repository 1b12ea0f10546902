package xds

import (
	"context"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"istio.io/istio/pilot/pkg/features"
	istiomodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/test"

	"aeraki.io/aeraki/pkg/model"
)

// The poller reads istiod's own record of what its proxies accepted: a proxy that
// rejected its listeners is reported with Envoy's error, one that accepted them is
// in sync.
func TestProxyPollerReadsRejections(t *testing.T) {
	// Debug types need a verified identity unless this is off: in a mesh the
	// controller has one, of the root namespace.
	test.SetForTest(t, &features.EnableDebugEndpointAuth, false)
	addr := freeAddress(t)
	startIstiod(t, addr, seDubboA)
	const nack = "Error adding/updating listener(s) 240.0.0.1_20880: Didn't find a registered implementation for name: 'envoy.filters.network.dubbo_proxy'"
	for _, p := range []struct {
		id     string
		reject bool
	}{
		{"sidecar~10.0.0.1~a.default~default.svc.cluster.local", true},
		{"sidecar~10.0.0.2~b.default~default.svc.cluster.local", false},
	} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		node := &core.Node{Id: p.id, Metadata: istiomodel.NodeMetadata{
			Namespace: "default", ProxyConfig: &istiomodel.NodeMetaProxyConfig{}, ClusterID: "Kubernetes",
		}.ToStruct()}
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: listenerTypeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		answer := &discovery.DiscoveryRequest{TypeUrl: listenerTypeURL, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo()}
		if p.reject {
			answer.VersionInfo = ""
			answer.ErrorDetail = &rpcstatus.Status{Code: 13, Message: nack}
		}
		if err := stream.Send(answer); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var got *model.ProxySync
	poller := NewProxyPoller(Options{Address: addr, Security: Security{Plaintext: true}, Logger: (&logBuffer{}).logger()}, 20*time.Millisecond,
		func(s *model.ProxySync) {
			mu.Lock()
			defer mu.Unlock()
			got = s
		})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- poller.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	eventually(t, "both proxies reported, one rejecting", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got != nil && got.Proxies == 2 && len(got.Rejecting) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	r := got.Rejecting[0]
	if r.ID != "a.default" || r.Namespace != "default" || r.Listeners != nack || r.Clusters != "" {
		t.Errorf("rejecting proxy %+v", r)
	}
	if time.Since(r.ListenersSent) > time.Minute {
		t.Errorf("listeners sent at %v", r.ListenersSent)
	}
	if got.InSync != 1 {
		t.Errorf("%d proxies in sync, want the accepting one", got.InSync)
	}
}
