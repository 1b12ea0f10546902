package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/meshcert"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/pkg/rds"
)

// RouteServerOptions say where the route server listens and how sidecars reach it
// (see generator.Sharer): with it, the client listeners of a port that only one
// protocol declares share one filter, and fetch the port's routes from here.
type RouteServerOptions struct {
	// Addr is the listen address; empty turns the route server, and shared ports, off.
	Addr string
	// Host and Port are the controller's Service, as sidecars dial it.
	Host string
	Port uint32
	// TrustDomain is the mesh's: sidecars check that the server's certificate names
	// spiffe://<TrustDomain>/ns/<namespace>/sa/<service account> of the controller.
	TrustDomain string
}

// routeServer serves the routes of every push, with the controller's own mesh
// certificate. Every replica runs one.
type routeServer struct {
	addr     string
	identity string
	cert     *meshcert.Source
	server   *rds.Server

	mu sync.Mutex
	// types are the type URLs set so far: a type a push no longer has is set empty.
	types map[string]bool
}

// newRouteServer returns the route server and what sidecars are told of it, or
// nothing when it is off or cannot run: a plaintext istiod connection has no CA to
// get a certificate from.
func newRouteServer(opts Options, observer rds.Observer, log logr.Logger) (*routeServer, *generator.RouteDiscovery, error) {
	ro := opts.RouteServer
	if ro.Addr == "" {
		return nil, nil, nil
	}
	if opts.IstiodSecurity.Plaintext {
		log.Info("route server off: a plaintext connection to istiod gives no mesh certificate; every port gets filters of its own")
		return nil, nil, nil
	}
	if ro.Host == "" || ro.Port == 0 || ro.TrustDomain == "" {
		return nil, nil, errors.New("route server: the host and port sidecars dial, and the trust domain, are required")
	}
	identity, err := opts.IstiodSecurity.SPIFFEID(ro.TrustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("route server identity: %w", err)
	}
	cert, err := meshcert.New(meshcert.Options{Address: opts.IstiodAddr, Security: opts.IstiodSecurity, Logger: log.WithName("meshcert")})
	if err != nil {
		return nil, nil, err
	}
	rs := &routeServer{
		addr:     ro.Addr,
		identity: identity,
		cert:     cert,
		server: rds.New(log.WithName("routes"), rds.TLS{Certificate: cert.GetCertificate, RootsFile: opts.IstiodSecurity.RootFile()},
			rds.WithObserver(observer)),
		types: map[string]bool{},
	}
	return rs, RouteDiscovery(ro, identity), nil
}

// RouteDiscovery is what sidecars are told of a route server of the options with the
// given SPIFFE identity: the controller's, and aeraki generate's for its preview.
func RouteDiscovery(ro RouteServerOptions, identity string) *generator.RouteDiscovery {
	return &generator.RouteDiscovery{Cluster: patch.RouteCluster, Host: ro.Host, Port: ro.Port, Identities: []string{identity}}
}

// SetRoutes implements push.RouteSink.
func (r *routeServer) SetRoutes(routes map[string]*model.RouteConfig) error {
	byType := map[string]map[string]proto.Message{}
	for name, rc := range routes {
		if byType[rc.TypeURL] == nil {
			byType[rc.TypeURL] = map[string]proto.Message{}
		}
		byType[rc.TypeURL][name] = rc.Config
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for typeURL := range r.types {
		if byType[typeURL] == nil {
			byType[typeURL] = map[string]proto.Message{}
		}
	}
	for typeURL, resources := range byType {
		if err := r.server.Set(typeURL, resources); err != nil {
			return err
		}
		r.types[typeURL] = true
	}
	return nil
}

// serve listens and serves until ctx ends.
func (r *routeServer) serve(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", r.addr)
	if err != nil {
		return fmt.Errorf("route server: %w", err)
	}
	return r.server.Serve(ctx, lis)
}

// ready fails until the certificate sidecars expect is there.
func (r *routeServer) ready() error {
	if !r.cert.Ready() {
		if err := r.cert.LastError(); err != nil {
			return fmt.Errorf("route server has no certificate: %w", err)
		}
		return errors.New("route server has no certificate yet")
	}
	if got := r.cert.Identity(); got != r.identity {
		return fmt.Errorf("route server certificate names %s, but sidecars are told to expect %s: set the trust domain of the mesh", got, r.identity)
	}
	return nil
}

// everyReplica is a manager runnable that runs whether or not this replica leads.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }

func (everyReplica) NeedLeaderElection() bool { return false }
