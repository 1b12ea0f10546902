package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/util/protomarshal"
)

var clusterTypeURL = "type.googleapis.com/" + string((&cluster.Cluster{}).ProtoReflect().Descriptor().FullName())

// Reconnect backoff of a Sidecar whose stream ended.
const (
	sidecarRetryMin = 100 * time.Millisecond
	sidecarRetryMax = 2 * time.Second
)

// SidecarOptions describe the pod a Sidecar stands for and the proxy build it mimics.
type SidecarOptions struct {
	// IP, Namespace and Labels are the pod's, as for SidecarNode.
	IP, Namespace string
	Labels        map[string]string
	// Metadata is added to the node metadata, as istio-agent adds ISTIO_META_* variables;
	// a key SidecarNode already sets (ISTIO_VERSION, say) is replaced.
	Metadata map[string]string
	// RejectFilters are network filter names this proxy build lacks: a listener with one of
	// them in any filter chain makes the sidecar NACK the LDS response, as Envoy does.
	RejectFilters []string
	// RejectClusters are cluster names the sidecar refuses, making it NACK the CDS response.
	RejectClusters []string
}

// XDSStatus is what a Sidecar knows of one type it subscribes to.
type XDSStatus struct {
	// Responses counts the responses received, over every stream.
	Responses int
	// Accepted says whether the last response was ACKed; false before the first.
	Accepted bool
	// VersionInfo is the version of the last accepted response, which every ACK and NACK
	// carries.
	VersionInfo string
	// Nonce is the nonce of the last response.
	Nonce string
	// ErrorDetail is the message of the NACK of the last response; "" if it was accepted.
	ErrorDetail string
}

// SidecarState is a snapshot of a Sidecar. Its maps are its own; the protos in them are
// shared and must not be modified.
type SidecarState struct {
	// Listeners and Clusters are the resources in effect, by name: Envoy applies every
	// resource of a response it can and keeps the previous version of one it rejects (or
	// goes without it if it is new), even though it NACKs the response.
	Listeners map[string]*listener.Listener
	Clusters  map[string]*cluster.Cluster
	LDS, CDS  XDSStatus
	// LastError is the error_detail message of the last NACK sent, of either type, kept
	// after later ACKs; "" before any.
	LastError string
	// Connects counts the ADS streams opened.
	Connects int
	// Err is the error that ended the last stream; nil until one ends.
	Err error
}

// Sidecar is a long-lived stand-in for an Envoy sidecar: one state-of-the-world ADS stream
// to istiod's plaintext xDS port that subscribes to CDS and LDS as Envoy does, and answers
// every response with an ACK or, for what SidecarOptions reject, a NACK worded as Envoy
// words it. When the stream ends (istiod restarting, say) it reconnects with backoff,
// resending the versions it last accepted as Envoy does. Its methods may be called from
// several goroutines.
type Sidecar struct {
	node           *core.Node
	conn           *grpc.ClientConn
	rejectFilters  map[string]bool
	rejectClusters map[string]bool
	cancel         context.CancelFunc
	done           chan struct{}

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change of state
	state   SidecarState
}

// StartSidecar connects a Sidecar to istiod and waits for its first CDS and LDS
// responses, accepted or not (at most sidecarTimeout when ctx has no deadline). The
// sidecar runs until Close or the end of ctx, so ctx must outlive it.
func (c *ControlPlane) StartSidecar(ctx context.Context, opts SidecarOptions) (*Sidecar, error) {
	if c.IstiodAddr == "" {
		return nil, errors.New("start sidecar: istiod not started")
	}
	node, err := proxyNode(opts)
	if err != nil {
		return nil, fmt.Errorf("start sidecar: %w", err)
	}
	conn, err := c.dialIstiod()
	if err != nil {
		return nil, fmt.Errorf("start sidecar: %w", err)
	}
	s := newSidecar(node, opts)
	runCtx, cancel := context.WithCancel(ctx)
	s.conn, s.cancel = conn, cancel
	go s.run(runCtx)
	_, err = s.Wait(ctx, func(st SidecarState) bool { return st.LDS.Responses > 0 && st.CDS.Responses > 0 })
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start sidecar: %w", err), s.Close())
	}
	return s, nil
}

func newSidecar(node *core.Node, opts SidecarOptions) *Sidecar {
	return &Sidecar{
		node:           node,
		rejectFilters:  setOf(opts.RejectFilters),
		rejectClusters: setOf(opts.RejectClusters),
		done:           make(chan struct{}),
		changed:        make(chan struct{}),
		state: SidecarState{
			Listeners: map[string]*listener.Listener{},
			Clusters:  map[string]*cluster.Cluster{},
		},
	}
}

// proxyNode is SidecarNode plus what makes istiod count the connection as a proxy in its
// syncz (a PROXY_CONFIG, here the mesh default that istio-agent sends when nothing
// overrides it) and the options' metadata.
func proxyNode(opts SidecarOptions) (*core.Node, error) {
	node, err := SidecarNode(opts.IP, opts.Namespace, opts.Labels)
	if err != nil {
		return nil, err
	}
	pc, err := protomarshal.ToJSONMap(mesh.DefaultMeshConfig().GetDefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("proxy config metadata: %w", err)
	}
	pcValue, err := structpb.NewValue(pc)
	if err != nil {
		return nil, fmt.Errorf("proxy config metadata: %w", err)
	}
	node.Metadata.Fields["PROXY_CONFIG"] = pcValue
	for k, v := range opts.Metadata {
		node.Metadata.Fields[k] = structpb.NewStringValue(v)
	}
	return node, nil
}

func setOf(names []string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// NodeID is the node id the sidecar presents.
func (s *Sidecar) NodeID() string { return s.node.GetId() }

// ProxyID is the id istiod knows the sidecar by, POD.NAMESPACE from its node id: the node
// id of its ClientConfig in SyncStatus.
func (s *Sidecar) ProxyID() string {
	if parts := strings.Split(s.node.GetId(), "~"); len(parts) == 4 {
		return parts[2]
	}
	return s.node.GetId()
}

// State returns a snapshot of the sidecar.
func (s *Sidecar) State() SidecarState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *Sidecar) snapshot() SidecarState {
	st := s.state
	st.Listeners = maps.Clone(st.Listeners)
	st.Clusters = maps.Clone(st.Clusters)
	return st
}

// Listeners returns the listeners in effect, by name.
func (s *Sidecar) Listeners() map[string]*listener.Listener { return s.State().Listeners }

// LDS returns the sidecar's state of its listener subscription.
func (s *Sidecar) LDS() XDSStatus { return s.State().LDS }

// CDS returns the sidecar's state of its cluster subscription.
func (s *Sidecar) CDS() XDSStatus { return s.State().CDS }

// LastError returns the error_detail message of the last NACK the sidecar sent.
func (s *Sidecar) LastError() string { return s.State().LastError }

// Err returns the error that ended the sidecar's last stream, if any.
func (s *Sidecar) Err() error { return s.State().Err }

// Wait returns the first state for which cond holds, waiting for changes until ctx ends
// (at most sidecarTimeout when ctx has no deadline) or the sidecar stops.
func (s *Sidecar) Wait(ctx context.Context, cond func(SidecarState) bool) (SidecarState, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, sidecarTimeout)
		defer cancel()
	}
	for {
		s.mu.Lock()
		st, changed := s.snapshot(), s.changed
		s.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-changed:
		case <-s.done:
			return st, fmt.Errorf("sidecar %s stopped while waiting (%s)", s.NodeID(), st)
		case <-ctx.Done():
			return st, fmt.Errorf("sidecar %s: %w waiting (%s)", s.NodeID(), ctx.Err(), st)
		}
	}
}

// WaitAccepted waits until the sidecar has accepted its last LDS response and cond holds
// for its listeners, and returns them.
func (s *Sidecar) WaitAccepted(ctx context.Context, cond func(map[string]*listener.Listener) bool) (map[string]*listener.Listener, error) {
	st, err := s.Wait(ctx, func(st SidecarState) bool { return st.LDS.Accepted && cond(st.Listeners) })
	return st.Listeners, err
}

// String summarises the state for error messages.
func (st SidecarState) String() string {
	return fmt.Sprintf("streams %d, LDS %s, CDS %s, listeners %v, last stream error %v",
		st.Connects, st.LDS, st.CDS, slices.Sorted(maps.Keys(st.Listeners)), st.Err)
}

func (x XDSStatus) String() string {
	if x.Responses == 0 {
		return "no response"
	}
	if x.Accepted {
		return fmt.Sprintf("%d responses, last accepted (version %s)", x.Responses, x.VersionInfo)
	}
	return fmt.Sprintf("%d responses, last rejected: %q", x.Responses, x.ErrorDetail)
}

// Close ends the stream and waits for the sidecar's goroutine.
func (s *Sidecar) Close() error {
	s.cancel()
	<-s.done
	return s.conn.Close()
}

// run keeps a stream open until ctx ends, reconnecting with backoff.
func (s *Sidecar) run(ctx context.Context) {
	defer close(s.done)
	retry := sidecarRetryMin
	for {
		opened := time.Now()
		err := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		s.update(func(st *SidecarState) { st.Err = err })
		if time.Since(opened) > sidecarRetryMax {
			retry = sidecarRetryMin // the stream had been up: start over
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, sidecarRetryMax)
	}
}

// stream runs one ADS stream until it fails or ctx ends.
func (s *Sidecar) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	s.update(func(st *SidecarState) { st.Connects++ })
	// Envoy subscribes to clusters first, and on a new stream sends the versions it has.
	s.mu.Lock()
	initial := []*discovery.DiscoveryRequest{
		{Node: s.node, TypeUrl: clusterTypeURL, VersionInfo: s.state.CDS.VersionInfo},
		{TypeUrl: listenerTypeURL, VersionInfo: s.state.LDS.VersionInfo},
	}
	s.mu.Unlock()
	for _, req := range initial {
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send %s request: %w", req.GetTypeUrl(), err)
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		req := s.handle(resp)
		if req == nil {
			continue
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send %s ACK/NACK: %w", req.GetTypeUrl(), err)
		}
	}
}

// handle applies a response and returns the ACK or NACK for it (nil for a type the
// sidecar did not ask for).
func (s *Sidecar) handle(resp *discovery.DiscoveryResponse) *discovery.DiscoveryRequest {
	var nack string
	var xs *XDSStatus
	s.mu.Lock()
	defer s.mu.Unlock()
	switch resp.GetTypeUrl() {
	case listenerTypeURL:
		xs = &s.state.LDS
		list, err := decodeResources(resp, func() *listener.Listener { return &listener.Listener{} })
		if err != nil {
			nack = err.Error()
			break
		}
		var failed []rejection
		s.state.Listeners, failed = applyResources("listener", s.state.Listeners, list, s.checkListener)
		nack = listenerNACK(failed)
	case clusterTypeURL:
		xs = &s.state.CDS
		list, err := decodeResources(resp, func() *cluster.Cluster { return &cluster.Cluster{} })
		if err != nil {
			nack = err.Error()
			break
		}
		var failed []rejection
		s.state.Clusters, failed = applyResources("cluster", s.state.Clusters, list, s.checkCluster)
		nack = clusterNACK(failed)
	default:
		return nil
	}
	xs.Responses++
	xs.Nonce = resp.GetNonce()
	xs.Accepted = nack == ""
	xs.ErrorDetail = nack
	req := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
	if nack == "" {
		xs.VersionInfo = resp.GetVersionInfo()
	} else {
		s.state.LastError = nack
		req.ErrorDetail = &status.Status{Code: int32(codes.Internal), Message: nack}
	}
	req.VersionInfo = xs.VersionInfo
	s.notify()
	return req
}

// update changes the state under the lock and wakes the waiters.
func (s *Sidecar) update(change func(*SidecarState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.state)
	s.notify()
}

// notify wakes the waiters; the caller holds s.mu.
func (s *Sidecar) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// rejection is one resource of a response that the sidecar refused, and why.
type rejection struct{ name, reason string }

type namedResource interface {
	proto.Message
	GetName() string
}

// applyResources is Envoy's state-of-the-world update of one type: resources missing
// from the response are removed, the others added or updated one by one, and one that
// check refuses (or a second one of the same name) keeps its previous version, or stays
// absent if it is new. It returns the new set and the refusals in response order.
func applyResources[R namedResource](kind string, current map[string]R, resources []R, check func(R) string) (map[string]R, []rejection) {
	next := make(map[string]R, len(resources))
	seen := make(map[string]bool, len(resources))
	var failed []rejection
	for _, r := range resources {
		name := r.GetName()
		if seen[name] {
			failed = append(failed, rejection{name, fmt.Sprintf("duplicate %s %s found", kind, name)})
			continue
		}
		seen[name] = true
		if reason := check(r); reason != "" {
			failed = append(failed, rejection{name, reason})
			if prev, ok := current[name]; ok {
				next[name] = prev
			}
			continue
		}
		next[name] = r
	}
	return next, failed
}

// checkListener returns Envoy's error for the first network filter that this proxy build
// lacks, building the filter chains in order and the default chain last as Envoy does.
func (s *Sidecar) checkListener(l *listener.Listener) string {
	chains := append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain())
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			// A filter with config_discovery is resolved later, by ECDS.
			if f.GetConfigDiscovery() == nil && s.rejectFilters[f.GetName()] {
				return fmt.Sprintf("Didn't find a registered implementation for name: '%s'", f.GetName())
			}
		}
	}
	return ""
}

func (s *Sidecar) checkCluster(c *cluster.Cluster) string {
	if s.rejectClusters[c.GetName()] {
		return "cluster refused by this test sidecar (SidecarOptions.RejectClusters)"
	}
	return ""
}

// listenerNACK words a refused LDS update as Envoy's LDS does: one
// "<listener>: <error>" line per refused listener.
func listenerNACK(failed []rejection) string {
	if len(failed) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Error adding/updating listener(s) ")
	for _, f := range failed {
		fmt.Fprintf(&b, "%s: %s\n", f.name, f.reason)
	}
	return b.String()
}

// clusterNACK words a refused CDS update as Envoy's CDS does: "<cluster>: <error>"
// joined by ", ".
func clusterNACK(failed []rejection) string {
	if len(failed) == 0 {
		return ""
	}
	parts := make([]string, len(failed))
	for i, f := range failed {
		parts[i] = f.name + ": " + f.reason
	}
	return "Error adding/updating cluster(s) " + strings.Join(parts, ", ")
}
