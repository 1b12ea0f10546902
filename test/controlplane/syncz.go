package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// synczTypeURL is istiod's debug type with its view of every proxy's sync state: per
// type, SYNCED, STALE, NOT_SENT or ERROR with the detail of the proxy's last NACK.
const synczTypeURL = "istio.io/debug/syncz"

// synczNodeID is the node of the SyncStatus client; without a PROXY_CONFIG in its
// metadata istiod does not list it among the proxies.
const synczNodeID = "sidecar~127.0.0.1~syncz." + IstioNamespace + "~" + IstioNamespace + ".svc.cluster.local"

// SyncStatus asks istiod once for its syncz, as `istioctl proxy-status` does (a stream
// of its own whose node declares the "event" generator), and returns one ClientConfig
// per connected proxy, sorted by node id (POD.NAMESPACE, see Sidecar.ProxyID). The plaintext istiod allows it without an
// identity (ENABLE_DEBUG_ENDPOINT_AUTH=false in istiodEnv); a stock one does not.
func (c *ControlPlane) SyncStatus(ctx context.Context) ([]*statusv3.ClientConfig, error) {
	meta, err := structpb.NewStruct(map[string]any{"GENERATOR": "event", "NAMESPACE": IstioNamespace})
	if err != nil {
		return nil, fmt.Errorf("sync status: %w", err)
	}
	resp, err := c.fetchOnce(ctx, &core.Node{Id: synczNodeID, Metadata: meta}, synczTypeURL)
	if err != nil {
		return nil, fmt.Errorf("sync status: %w", err)
	}
	out, err := decodeResources(resp, func() *statusv3.ClientConfig { return &statusv3.ClientConfig{} })
	if err != nil {
		return nil, fmt.Errorf("sync status: %w", err)
	}
	slices.SortFunc(out, func(a, b *statusv3.ClientConfig) int { return cmp.Compare(a.GetNode().GetId(), b.GetNode().GetId()) })
	return out, nil
}
