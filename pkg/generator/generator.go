// Package generator defines what a protocol generator is: a pure function from one
// service port, and the push's context, to the EnvoyFilters of that port. The
// registry maps each protocol to its generator; the errors say how a port failed.
package generator

import (
	"aeraki.io/aeraki/pkg/model"
)

// Context carries the settings every generator sees, and the push's lookups into
// other objects. It is the same for all services of a push, except that the
// translation gives each service its own Lookup, so that it can tell later which
// objects the service's result depends on.
type Context struct {
	// RootNamespace is Istio's root namespace: outbound EnvoyFilters go there so that
	// they apply to every sidecar.
	RootNamespace string
	// DomainSuffix completes short hosts in VirtualService destinations.
	DomainSuffix string
	// Lookup finds other objects of the push; nil finds nothing.
	Lookup Lookup
	// RouteDiscovery, when set, lets the client listeners of a port share one filter
	// whose routes sidecars fetch from the controller (see Sharer). Nil: every service
	// port gets listener patches of its own, with its routes inline.
	RouteDiscovery *RouteDiscovery
	// Istiod is the istiod the EnvoyFilters are for: a generator emits nothing that
	// istiod's version cannot decode (an EnvoyFilter with an operation an istiod does
	// not know breaks that istiod's EnvoyFilter list, for every filter). The zero
	// value, an unknown version, is the newest Istio.
	Istiod model.Istiod
}

// RouteDiscovery is the controller's route server as sidecars reach it: a cluster the
// translation adds to every sidecar, which connects over mutual TLS with the
// sidecar's workload certificate.
type RouteDiscovery struct {
	// Cluster names the sidecars' cluster for the server.
	Cluster string
	// Host and Port are the server's address: the controller's Kubernetes Service.
	Host string
	Port uint32
	// Identities are the SPIFFE IDs the server's certificate may carry.
	Identities []string
}

// Lookup finds the objects of a push that a generator may read besides its service.
type Lookup interface {
	// Service returns the service that owns a fully qualified host, or nil.
	Service(host string) *model.Service
	// Secret returns a Secret, or nil.
	Secret(namespace, name string) *model.Secret
}

// Service returns the service of the push that owns a fully qualified host, or nil.
// Generators use it for routes that send traffic to another service.
func (c *Context) Service(host string) *model.Service {
	if c.Lookup == nil {
		return nil
	}
	return c.Lookup.Service(host)
}

// Secret returns a Secret of the push, or nil.
func (c *Context) Secret(namespace, name string) *model.Secret {
	if c.Lookup == nil {
		return nil
	}
	return c.Lookup.Secret(namespace, name)
}

// WithLookup returns a copy of c that looks up through l.
func (c *Context) WithLookup(l Lookup) *Context {
	out := *c
	out.Lookup = l
	return &out
}

// Generator builds the EnvoyFilters of one service port of its protocol. It is a pure
// function of its inputs: an error says what the user must fix, and no filters are
// returned with it.
type Generator interface {
	Generate(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error)
}

// Func adapts a function to Generator.
type Func func(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error)

// Generate calls f.
func (f Func) Generate(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	return f(ctx, svc, port)
}

// Sharer is a generator whose client listeners of one port can all carry the same
// filter, the routes of every service on the port being served by name over xDS
// (Context.RouteDiscovery). istiod walks every listener patch of a sidecar for every
// filter of every listener it builds: one patch per port instead of one per service
// takes that work from services x services down to services. The translation shares
// a port only when every service that declares the port number has the protocol and
// no two of them have the same key: then a request finds the routes it found on its
// service's own listener, whichever listener of the port it came through.
type Sharer interface {
	Generator
	// Keys are what select the service port's routes in the shared configuration
	// (for Dubbo, the interfaces it serves); none when the service has none, which
	// its generation then reports.
	Keys(svc *model.Service, port *model.Port) []string
	// Inbound returns the EnvoyFilters of the port's server side only.
	Inbound(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error)
	// Routes returns the service port's client routes for the shared configuration,
	// one per key.
	Routes(ctx *Context, svc *model.Service, port *model.Port) ([]*model.Route, error)
	// Shared returns the EnvoyFilter of every client listener of a port, and the
	// route configuration it names, made of the routes of the port's services (in
	// key order, one per key).
	Shared(ctx *Context, port uint32, routes []*model.Route) (*model.EnvoyFilter, *model.RouteConfig, error)
}

// Registry maps each protocol to its generator. It is built in one place (see package
// plugin) and read-only afterwards.
type Registry map[model.Protocol]Generator
