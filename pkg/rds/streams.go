package rds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	xds "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Observer is told about streams, clients' answers to responses and refused
// handshakes, for counters kept elsewhere. It is called from the gRPC goroutines
// and must return quickly.
type Observer interface {
	// ObserveStream is told that a stream opened (open) or closed.
	ObserveStream(open bool)
	// ObserveAck is told that a client accepted (ACK) or refused (NACK) a
	// response of typeURL.
	ObserveAck(typeURL string, accepted bool)
	// ObserveRefused is told that a handshake was refused, with one of the Reason
	// constants.
	ObserveRefused(reason string)
}

// ObserverFuncs adapts functions to Observer; a nil one is not called.
type ObserverFuncs struct {
	Stream  func(open bool)
	Ack     func(typeURL string, accepted bool)
	Refused func(reason string)
}

// ObserveStream calls f.Stream.
func (f ObserverFuncs) ObserveStream(open bool) {
	if f.Stream != nil {
		f.Stream(open)
	}
}

// ObserveAck calls f.Ack.
func (f ObserverFuncs) ObserveAck(typeURL string, accepted bool) {
	if f.Ack != nil {
		f.Ack(typeURL, accepted)
	}
}

// ObserveRefused calls f.Refused.
func (f ObserverFuncs) ObserveRefused(reason string) {
	if f.Refused != nil {
		f.Refused(reason)
	}
}

// Stream is a connected ADS stream.
type Stream struct {
	// Peer is the SPIFFE ID of the client's certificate.
	Peer string
	// Address is the client's address.
	Address string
	// Node is the xDS node ID of the client's first request, "" before it.
	Node string
	// Delta is true for the incremental protocol.
	Delta bool
}

// streams keeps the connected streams for Streams, logging and the observer.
type streams struct {
	log      logr.Logger
	observer Observer

	mu   sync.Mutex
	seq  uint64
	open map[streamKey]*streamState
}

// streamKey names a stream: go-control-plane numbers the streams of each of its
// servers (state of the world, delta) from 1, and Serve makes servers of its own.
type streamKey struct {
	serve *callbacks
	delta bool
	id    int64
}

type streamState struct {
	Stream
	seq uint64
	// sent is the last response of each type and whether the client answered it.
	sent map[string]*sent
}

type sent struct {
	nonce, version string
	answered       bool
}

func newStreams(log logr.Logger, observer Observer) *streams {
	return &streams{log: log, observer: observer, open: map[streamKey]*streamState{}}
}

func (s *streams) list() []Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	states := slices.SortedFunc(maps.Values(s.open), func(a, b *streamState) int {
		return cmp.Compare(a.seq, b.seq)
	})
	out := make([]Stream, 0, len(states))
	for _, state := range states {
		out = append(out, state.Stream)
	}
	return out
}

func (s *streams) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// callbacks returns the go-control-plane callbacks of one Serve.
func (s *streams) callbacks() *callbacks {
	return &callbacks{streams: s}
}

// opened records a stream whose context carries the peer gRPC verified. A stream
// without a SPIFFE ID is refused; Serve's TLS lets none through, but the handler
// does not rely on how it was registered.
func (s *streams) opened(ctx context.Context, key streamKey) error {
	stream := Stream{Delta: key.delta}
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			stream.Address = p.Addr.String()
		}
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			stream.Peer, _ = spiffeID(info.State.PeerCertificates[0])
		}
	}
	if stream.Peer == "" {
		s.log.V(1).Info("refusing a stream without a verified SPIFFE ID", "address", stream.Address)
		return status.Error(codes.Unauthenticated, "a client certificate with a SPIFFE ID is required")
	}
	s.mu.Lock()
	s.seq++
	s.open[key] = &streamState{Stream: stream, seq: s.seq, sent: map[string]*sent{}}
	s.mu.Unlock()
	s.log.V(1).Info("stream connected", "peer", stream.Peer, "address", stream.Address, "delta", stream.Delta, "stream", key.id)
	s.observer.ObserveStream(true)
	return nil
}

func (s *streams) closed(key streamKey, node *core.Node) {
	s.mu.Lock()
	state, ok := s.open[key]
	delete(s.open, key)
	s.mu.Unlock()
	if !ok {
		return // refused at opening
	}
	s.log.V(1).Info("stream disconnected", "peer", state.Peer, "address", state.Address, "node", node.GetId(), "delta", state.Delta, "stream", key.id)
	s.observer.ObserveStream(false)
}

// request notes the client's node and, if the request answers the last response
// of its type, whether it accepted it. rejection is the client's error, nil for
// an ACK.
func (s *streams) request(key streamKey, node *core.Node, typeURL, nonce string, rejection error) {
	s.mu.Lock()
	state, ok := s.open[key]
	if !ok {
		s.mu.Unlock()
		return
	}
	if state.Node == "" {
		state.Node = node.GetId()
	}
	last := state.sent[typeURL]
	// A request names the nonce of the last response it saw also when it only
	// changes its subscription: count the first answer to each response only.
	answer := last != nil && nonce != "" && nonce == last.nonce && !last.answered
	version := ""
	if answer {
		last.answered = true
		version = last.version
	}
	stream := state.Stream
	s.mu.Unlock()
	if !answer {
		return
	}
	if rejection != nil {
		// Not ours to fix, but nothing else tells anyone that a sidecar refuses
		// what we serve.
		s.log.Info("client rejected a response", "peer", stream.Peer, "node", stream.Node, "typeURL", typeURL,
			"version", version, "error", rejection.Error())
	} else {
		s.log.V(2).Info("client accepted a response", "peer", stream.Peer, "node", stream.Node, "typeURL", typeURL, "version", version)
	}
	s.observer.ObserveAck(typeURL, rejection == nil)
}

// response notes the last response of a type sent on a stream.
func (s *streams) response(key streamKey, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if state, ok := s.open[key]; ok {
		state.sent[typeURL] = &sent{nonce: nonce, version: version}
	}
}

// callbacks are go-control-plane's server callbacks for one Serve.
type callbacks struct {
	streams *streams
}

var _ xds.Callbacks = (*callbacks)(nil)

func (c *callbacks) key(delta bool, id int64) streamKey {
	return streamKey{serve: c, delta: delta, id: id}
}

func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.streams.opened(ctx, c.key(false, id))
}

func (c *callbacks) OnStreamClosed(id int64, node *core.Node) {
	c.streams.closed(c.key(false, id), node)
}

func (c *callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	var rejected error
	if detail := req.GetErrorDetail(); detail != nil {
		rejected = errors.New(detail.GetMessage())
	}
	c.streams.request(c.key(false, id), req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), rejected)
	return nil
}

func (c *callbacks) OnStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.streams.response(c.key(false, id), req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.streams.opened(ctx, c.key(true, id))
}

func (c *callbacks) OnDeltaStreamClosed(id int64, node *core.Node) {
	c.streams.closed(c.key(true, id), node)
}

func (c *callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	var rejected error
	if detail := req.GetErrorDetail(); detail != nil {
		rejected = errors.New(detail.GetMessage())
	}
	c.streams.request(c.key(true, id), req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), rejected)
	return nil
}

func (c *callbacks) OnStreamDeltaResponse(id int64, req *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.streams.response(c.key(true, id), req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest refuses REST fetches, which Serve does not register anyway.
func (c *callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "only ADS streams are served")
}

func (c *callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// cacheLogger passes go-control-plane's log lines to logr. Its info lines are
// per watch, so they go to a verbose level; its warnings are worth seeing.
type cacheLogger struct {
	log logr.Logger
}

func (l cacheLogger) Debugf(format string, args ...any) { l.at(3, format, args) }
func (l cacheLogger) Infof(format string, args ...any)  { l.at(2, format, args) }
func (l cacheLogger) Warnf(format string, args ...any)  { l.at(0, format, args) }

func (l cacheLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Errorf(format, args...), "go-control-plane")
}

func (l cacheLogger) at(level int, format string, args []any) {
	if log := l.log.V(level); log.Enabled() {
		log.Info(fmt.Sprintf(format, args...))
	}
}
