package controlplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// sidecarTimeout bounds SidecarListeners when ctx has no deadline.
const sidecarTimeout = 30 * time.Second

var (
	listenerTypeURL = "type.googleapis.com/" + string((&listener.Listener{}).ProtoReflect().Descriptor().FullName())
	resourceTypeURL = "type.googleapis.com/" + string((&discovery.Resource{}).ProtoReflect().Descriptor().FullName())
)

// sidecarIstioVersion is the Istio release that the istio.io/istio pin in
// go.mod corresponds to. istiod gates features on a proxy's version (an empty
// one counts as newest); it cannot be asked, as pilot-discovery built without
// release ldflags reports "unknown", and test binaries carry no module info.
const sidecarIstioVersion = "1.31.0"

// SidecarListeners connects to istiod as the sidecar of a pod with address ip
// in namespace with labels, asks once for LDS and returns the listeners by
// name. Each call is a new connection, so it sees istiod's current config.
//
// The raw response is decoded on purpose: adsc's GetTCPListeners drops every
// listener whose last filter is not tcp_proxy or the HTTP connection manager,
// which hides exactly the protocol filters this project writes.
func (c *ControlPlane) SidecarListeners(ctx context.Context, ip, namespace string, labels map[string]string) (map[string]*listener.Listener, error) {
	if c.IstiodAddr == "" {
		return nil, fmt.Errorf("sidecar listeners: istiod not started")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sidecarTimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	node, err := SidecarNode(ip, namespace, labels)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(c.IstiodAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, fmt.Errorf("sidecar listeners: dial istiod %s: %w", c.IstiodAddr, err)
	}
	defer func() { _ = conn.Close() }()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("sidecar listeners: open ADS stream to %s: %w", c.IstiodAddr, err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: listenerTypeURL}); err != nil {
		return nil, fmt.Errorf("sidecar listeners: send LDS request: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("sidecar listeners: receive LDS for %s: %w", node.GetId(), err)
		}
		if resp.GetTypeUrl() != listenerTypeURL {
			continue
		}
		return decodeListeners(resp)
	}
}

// SidecarNode is the node a sidecar injected into a pod presents: the
// "sidecar~IP~POD.NS~NS.svc.cluster.local" id istiod parses, and the metadata
// istiod reads for its scope (namespace, labels for workload selectors,
// version for feature gates, cluster for the registry lookup).
func SidecarNode(ip, namespace string, labels map[string]string) (*core.Node, error) {
	podName := "sidecar-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip)
	labelValues := map[string]any{}
	for k, v := range labels {
		labelValues[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         namespace,
		"LABELS":            labelValues,
		"ISTIO_VERSION":     sidecarIstioVersion,
		"CLUSTER_ID":        "Kubernetes",
		"INSTANCE_IPS":      ip,
		"INTERCEPTION_MODE": "REDIRECT",
		"WORKLOAD_NAME":     podName,
	})
	if err != nil {
		return nil, fmt.Errorf("sidecar node metadata: %w", err)
	}
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, podName, namespace, namespace),
		Metadata: meta,
	}, nil
}

func decodeListeners(resp *discovery.DiscoveryResponse) (map[string]*listener.Listener, error) {
	out := make(map[string]*listener.Listener, len(resp.GetResources()))
	for _, res := range resp.GetResources() {
		if res.GetTypeUrl() == resourceTypeURL {
			wrapped := &discovery.Resource{}
			if err := res.UnmarshalTo(wrapped); err != nil {
				return nil, fmt.Errorf("decode LDS resource wrapper: %w", err)
			}
			res = wrapped.GetResource()
		}
		l := &listener.Listener{}
		if err := res.UnmarshalTo(l); err != nil {
			return nil, fmt.Errorf("decode listener (%s): %w", res.GetTypeUrl(), err)
		}
		out[l.GetName()] = l
	}
	return out, nil
}
