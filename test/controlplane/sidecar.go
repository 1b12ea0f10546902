package controlplane

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// sidecarTimeout bounds a wait on istiod (SidecarListeners, StartSidecar,
// Sidecar.Wait, SyncStatus) when ctx has no deadline.
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
	node, err := SidecarNode(ip, namespace, labels)
	if err != nil {
		return nil, err
	}
	resp, err := c.fetchOnce(ctx, node, listenerTypeURL)
	if err != nil {
		return nil, fmt.Errorf("sidecar listeners of %s: %w", node.GetId(), err)
	}
	return decodeListeners(resp)
}

// SidecarClusters is SidecarListeners for CDS: the sidecar's clusters by name.
func (c *ControlPlane) SidecarClusters(ctx context.Context, ip, namespace string, labels map[string]string) (map[string]*cluster.Cluster, error) {
	node, err := SidecarNode(ip, namespace, labels)
	if err != nil {
		return nil, err
	}
	resp, err := c.fetchOnce(ctx, node, clusterTypeURL)
	if err != nil {
		return nil, fmt.Errorf("sidecar clusters of %s: %w", node.GetId(), err)
	}
	return decodeByName(resp, func() *cluster.Cluster { return &cluster.Cluster{} })
}

// fetchOnce opens a stream to istiod's plaintext xDS port as node, asks for every
// resource of typeURL and returns the first response, waiting at most sidecarTimeout
// when ctx has no deadline.
func (c *ControlPlane) fetchOnce(ctx context.Context, node *core.Node, typeURL string) (*discovery.DiscoveryResponse, error) {
	if c.IstiodAddr == "" {
		return nil, errors.New("istiod not started")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sidecarTimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	conn, err := c.dialIstiod()
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("open ADS stream to %s: %w", c.IstiodAddr, err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typeURL}); err != nil {
		return nil, fmt.Errorf("send %s request: %w", typeURL, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("receive %s: %w", typeURL, err)
		}
		if resp.GetTypeUrl() == typeURL {
			return resp, nil
		}
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

// dialIstiod returns a client of istiod's plaintext xDS port. gRPC connects
// lazily: an unreachable istiod shows as the error of the first stream.
func (c *ControlPlane) dialIstiod() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(c.IstiodAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial istiod %s: %w", c.IstiodAddr, err)
	}
	return conn, nil
}

func decodeListeners(resp *discovery.DiscoveryResponse) (map[string]*listener.Listener, error) {
	return decodeByName(resp, func() *listener.Listener { return &listener.Listener{} })
}

// decodeByName decodes the resources of resp by name.
func decodeByName[M interface {
	proto.Message
	GetName() string
}](resp *discovery.DiscoveryResponse, newM func() M) (map[string]M, error) {
	list, err := decodeResources(resp, newM)
	if err != nil {
		return nil, err
	}
	out := make(map[string]M, len(list))
	for _, m := range list {
		out[m.GetName()] = m
	}
	return out, nil
}

// decodeResources decodes the resources of resp in their order, each either
// bare or wrapped in a discovery.Resource.
func decodeResources[M proto.Message](resp *discovery.DiscoveryResponse, newM func() M) ([]M, error) {
	out := make([]M, 0, len(resp.GetResources()))
	for _, res := range resp.GetResources() {
		if res.GetTypeUrl() == resourceTypeURL {
			wrapped := &discovery.Resource{}
			if err := res.UnmarshalTo(wrapped); err != nil {
				return nil, fmt.Errorf("decode %s resource wrapper: %w", resp.GetTypeUrl(), err)
			}
			res = wrapped.GetResource()
		}
		m := newM()
		if err := res.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("decode %s resource (%s): %w", resp.GetTypeUrl(), res.GetTypeUrl(), err)
		}
		out = append(out, m)
	}
	return out, nil
}
