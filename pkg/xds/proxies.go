package xds

import (
	"context"
	"errors"
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	status "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	istiomodel "istio.io/istio/pilot/pkg/model"

	"aeraki.io/aeraki/pkg/model"
)

// Proxy status: istiod's "event" generator serves istio.io/debug/syncz, the
// sync status of every proxy connected to it, which is what `istioctl
// proxy-status` shows: per proxy and xDS type, whether the last update was
// accepted, is still on its way, or was rejected, with Envoy's error detail. It
// needs a verified identity of the root namespace (ENABLE_DEBUG_ENDPOINT_AUTH) to
// see the proxies of every namespace: the one the watcher has.
//
// It is asked for on a stream of its own, opened for each poll and closed after
// the answer: a stream that stays subscribed would be sent the whole status again
// on every push istiod makes, which for a large mesh costs more than a poll every
// few seconds. One answer lists every proxy (about 1 KB each); only the rejecting
// ones are kept, at most model.MaxRejectingProxies.
const (
	syncTypeURL      = "istio.io/debug/syncz"
	listenerTypeURL  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	clusterTypeURL   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	maxStatusMessage = 256 << 20
	pollTimeout      = 30 * time.Second
)

// ProxyPoller asks istiod for its proxies' sync status every Interval.
type ProxyPoller struct {
	opts     Options
	interval time.Duration
	onSync   func(*model.ProxySync)
	log      logr.Logger
}

// NewProxyPoller returns a poller that connects as opts says (the watcher's
// options) and hands every answer to onSync.
func NewProxyPoller(opts Options, interval time.Duration, onSync func(*model.ProxySync)) *ProxyPoller {
	opts = opts.withDefaults()
	return &ProxyPoller{opts: opts, interval: interval, onSync: onSync, log: opts.Logger.WithName("proxy-status")}
}

// Run polls until ctx is done; a failed poll is logged and tried again at the
// next tick. It returns an error only if it cannot start.
func (p *ProxyPoller) Run(ctx context.Context) error {
	// A watcher of its own for the identity and credentials, which tells nobody
	// of the poller's streams: they come and go by design.
	opts := p.opts
	opts.Observer = nil
	w := NewWatcher(opts, nil)
	id, err := w.waitIdentity(ctx)
	if err != nil {
		return nil //nolint:nilerr // ctx is done
	}
	conn, err := grpc.NewClient(p.opts.Address, w.credentials()...)
	if err != nil {
		return fmt.Errorf("proxy status: connecting to istiod at %s: %w", p.opts.Address, err)
	}
	defer func() { _ = conn.Close() }()
	node := statusNode(id, p.opts.DomainSuffix)
	client := discovery.NewAggregatedDiscoveryServiceClient(conn)
	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	failing := false
	for {
		sync, err := p.poll(ctx, client, node)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				p.log.Error(err, "cannot read the proxies' sync status from istiod; retrying", "address", p.opts.Address)
			}
			failing = true
		case err == nil:
			if failing {
				p.log.Info("reading the proxies' sync status again")
			}
			failing = false
			p.onSync(sync)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (p *ProxyPoller) poll(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node *core.Node) (*model.ProxySync, error) {
	resp, err := askSync(ctx, client, node)
	if err != nil {
		return nil, err
	}
	return decodeSync(resp, time.Now())
}

// ReadIstiod asks istiod once for its proxies' sync status and reads, from the
// answer's control plane identifier, the version istiod reports: istiod identifies
// itself only there (DiscoveryResponse.control_plane is set on istio.io/debug/syncz
// answers alone). An answer without an identifier is an istiod of unknown version.
// An error is a failed connection or a refusal (ENABLE_DEBUG_ENDPOINT_AUTH without
// a verified identity, as in plaintext); IsRefusal tells which.
func ReadIstiod(ctx context.Context, opts Options) (model.Istiod, error) {
	opts = opts.withDefaults()
	// The config watcher reports the connection and the token; this one says nothing.
	opts.Observer, opts.Logger = nil, logr.Discard()
	w := NewWatcher(opts, nil)
	id, err := w.waitIdentity(ctx)
	if err != nil {
		return model.Istiod{}, err
	}
	conn, err := grpc.NewClient(opts.Address, w.credentials()...)
	if err != nil {
		return model.Istiod{}, fmt.Errorf("connecting to istiod at %s: %w", opts.Address, err)
	}
	defer func() { _ = conn.Close() }()
	resp, err := askSync(ctx, discovery.NewAggregatedDiscoveryServiceClient(conn), statusNode(id, opts.DomainSuffix))
	if err != nil {
		return model.Istiod{}, err
	}
	if resp.GetControlPlane().GetIdentifier() == "" {
		return model.Istiod{}, nil
	}
	return model.IstiodFromIdentifier(resp.GetControlPlane().GetIdentifier())
}

// IsRefusal reports whether err is istiod refusing to answer, not a failure to reach it.
func IsRefusal(err error) bool {
	switch grpcstatus.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// statusNode is the node that asks for the proxies' sync status.
func statusNode(id identity, domainSuffix string) *core.Node {
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~0.0.0.0~aeraki-status.%s~%s.svc.%s", id.Namespace, id.Namespace, domainSuffix),
		Metadata: istiomodel.NodeMetadata{Generator: "event", Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}.ToStruct(),
	}
}

// askSync asks for istio.io/debug/syncz on a stream of its own and returns the answer.
func askSync(ctx context.Context, client discovery.AggregatedDiscoveryServiceClient, node *core.Node) (*discovery.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel() // ends the stream
	stream, err := client.StreamAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(maxStatusMessage))
	if err != nil {
		return nil, fmt.Errorf("opening a stream: %w", err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: syncTypeURL}); err != nil {
		return nil, fmt.Errorf("asking for %s: %w", syncTypeURL, err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", syncTypeURL, err)
		}
		if resp.GetTypeUrl() == syncTypeURL {
			return resp, nil
		}
	}
}

// decodeSync keeps what a syncz answer says of listeners and clusters.
func decodeSync(resp *discovery.DiscoveryResponse, at time.Time) (*model.ProxySync, error) {
	out := &model.ProxySync{At: at}
	var errs []error
	for _, res := range resp.GetResources() {
		cc := &status.ClientConfig{}
		if err := res.UnmarshalTo(cc); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Proxies++
		ps := &model.ProxyStatus{ID: cc.GetNode().GetId(), Namespace: cc.GetNode().GetMetadata().GetFields()["NAMESPACE"].GetStringValue()}
		synced := true
		for _, x := range cc.GetGenericXdsConfigs() {
			var detail *string
			var sent *time.Time
			switch x.GetTypeUrl() {
			case listenerTypeURL:
				detail, sent = &ps.Listeners, &ps.ListenersSent
			case clusterTypeURL:
				detail, sent = &ps.Clusters, &ps.ClustersSent
			default:
				continue
			}
			switch x.GetConfigStatus() {
			case status.ConfigStatus_ERROR:
				*detail = x.GetErrorState().GetDetails()
				*sent = x.GetLastUpdated().AsTime()
				synced = false
			case status.ConfigStatus_STALE:
				synced = false
			}
		}
		switch {
		case ps.Listeners == "" && ps.Clusters == "":
			if synced {
				out.InSync++
			}
		case len(out.Rejecting) < model.MaxRejectingProxies:
			out.Rejecting = append(out.Rejecting, ps)
		default:
			out.Dropped++
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("decoding %d of %d proxies' status: %w", len(errs), len(resp.GetResources()), errors.Join(errs...))
	}
	return out, nil
}
