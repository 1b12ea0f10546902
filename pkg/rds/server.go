package rds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	xds "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// Server serves named resources of any type URL over ADS to mesh clients that
// authenticate with a workload certificate. Set may be called before, during and
// after Serve, from any goroutine.
type Server struct {
	log      logr.Logger
	auth     TLS
	observer Observer
	cache    *gate
	streams  *streams
}

// Option changes a Server from its defaults.
type Option func(*Server)

// WithObserver makes the Server tell o about streams, acknowledgements and
// refused clients, for counters kept elsewhere.
func WithObserver(o Observer) Option {
	return func(s *Server) {
		if o != nil {
			s.observer = o
		}
	}
}

// New returns a Server that authenticates as auth says; Serve checks that auth is
// complete.
func New(log logr.Logger, auth TLS, opts ...Option) *Server {
	s := &Server{
		log:      log,
		auth:     auth,
		observer: ObserverFuncs{},
		cache:    newGate(log),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.streams = newStreams(log, s.observer)
	return s
}

// Set replaces the resources of typeURL, by name, at once: a resource absent from
// resources is removed. The first Set of a type answers the requests held for it.
// Every resource must be a message of typeURL (type.googleapis.com/<full name>)
// and, if it has a string field "name", be named by it; names must not be empty.
// The messages are copied. If a resource is refused, nothing changes.
func (s *Server) Set(typeURL string, resources map[string]proto.Message) error {
	set, err := newResourceSet(typeURL, resources)
	if err != nil {
		return fmt.Errorf("setting %s: %w", typeURL, err)
	}
	previous, err := s.cache.set(typeURL, set)
	if err != nil {
		return fmt.Errorf("setting %s: %w", typeURL, err)
	}
	if previous != set.version {
		s.log.V(1).Info("resources set", "typeURL", typeURL, "version", set.version, "resources", len(set.resources))
	}
	return nil
}

// Version returns the version served for typeURL, and false before its first Set.
func (s *Server) Version(typeURL string) (string, bool) {
	return s.cache.version(typeURL)
}

// Streams returns the streams connected now, in the order they opened.
func (s *Server) Streams() []Stream {
	return s.streams.list()
}

// ConnectedStreams returns how many streams are connected now.
func (s *Server) ConnectedStreams() int {
	return s.streams.count()
}

// Keepalive, connection age and ping policy as istiod's own xDS server has them
// (istio pilot/pkg/grpc ServerOptions, with its chart's 30m connection age):
// pings find dead peers, so that streams are not counted for ever; a bounded
// connection age spreads sidecars again over the replicas after a scale-up or a
// rollout (a reconnect costs a resend of the same versions, nothing else); the
// grace lets a response in flight finish.
const (
	keepaliveTime         = 30 * time.Second
	keepaliveTimeout      = 10 * time.Second
	maxConnectionAge      = 30 * time.Minute
	maxConnectionAgeGrace = 10 * time.Second
	minClientPingInterval = keepaliveTime / 2
	// stopGrace bounds how long Serve waits for clients to close their connections
	// once its context has ended.
	stopGrace = 5 * time.Second
)

// Serve serves ADS on lis until ctx ends, then stops and returns nil; it returns
// an error if auth is incomplete or serving fails. It closes lis. There is no way
// to register the service on a gRPC server of the caller's: Serve owns the
// transport security, so that no client gets in without a mesh certificate.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if err := s.auth.validate(); err != nil {
		_ = lis.Close()
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	}
	// The streams end with ctx: go-control-plane's handlers return when it is done.
	handler := xds.NewServer(ctx, s.cache, s.streams.callbacks(), sotw.WithLogger(cacheLogger{log: s.log.WithName("xds")}))
	server := grpc.NewServer(
		grpc.Creds(s.credentials()),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  keepaliveTime,
			Timeout:               keepaliveTimeout,
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionAgeGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minClientPingInterval}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(server, handler)

	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	s.log.Info("serving xDS", "address", lis.Addr().String())

	select {
	case err := <-served:
		server.Stop()
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}

	// The handlers have returned or are returning; a client that does not close
	// its connection after GOAWAY is cut off after stopGrace.
	stopped := make(chan struct{})
	go func() {
		server.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		server.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving xDS on %s: %w", lis.Addr(), err)
	}
	s.log.Info("stopped serving xDS", "address", lis.Addr().String())
	return nil
}
