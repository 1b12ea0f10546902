package translate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

// sharing says which ports the client listeners share (see generator.Sharer): port
// number to protocol. A shared port's filter matches every TCP listener of the port
// number in every sidecar, so a port is shared only when each port of that number,
// of every ServiceEntry istiod knows (Kubernetes Services included), declares the
// same protocol, and that protocol's generator can share.
type sharing map[uint32]model.Protocol

func sharedPorts(ctx *generator.Context, reg generator.Registry, snap *model.Snapshot) sharing {
	if ctx.RouteDiscovery == nil {
		return nil
	}
	seen := map[uint32]model.Protocol{}
	mixed := map[uint32]bool{}
	for _, c := range snap.ServiceEntries {
		se, ok := c.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, p := range se.GetPorts() {
			proto := model.ParsePortName(p.GetName())
			if have, ok := seen[p.GetNumber()]; ok && have != proto {
				mixed[p.GetNumber()] = true
			}
			seen[p.GetNumber()] = proto
		}
	}
	out := sharing{}
	for port, proto := range seen {
		if _, ok := reg[proto].(generator.Sharer); ok && !mixed[port] {
			out[port] = proto
		}
	}
	return out
}

// shares reports whether port of svc is generated shared.
func (s sharing) shares(port *model.Port) bool {
	p, ok := s[port.Number]
	return ok && p == port.Protocol
}

// signature names the ports of svc that are shared, so that a cached result is reused
// only while the service's ports are shared the same way.
func (s sharing) signature(svc *model.Service) string {
	var b strings.Builder
	for _, p := range svc.Ports {
		if s.shares(p) {
			b.WriteString(strconv.FormatUint(uint64(p.Number), 10))
			b.WriteByte(',')
		}
	}
	return b.String()
}

// routeOwner is the service whose routes hold a key of a shared port.
type routeOwner struct {
	service string
	route   *model.Route
}

// sharedRoutes collects the routes of shared ports: port -> key -> owner.
type sharedRoutes map[uint32]map[string]routeOwner

// conflict reports the first route of r whose key an earlier service of the port
// already holds.
func (sr sharedRoutes) conflict(r *serviceResult, svc *model.Service) *ServiceError {
	for i, route := range r.routes {
		owner, taken := sr[route.Port][route.Key]
		if !taken {
			continue
		}
		port := r.routePorts[i]
		return &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: fmt.Errorf(
			"%w: %s on port %d is also routed for %s: clients' routes are chosen by it", ErrConflict, route.Key, route.Port, owner.service)}
	}
	return nil
}

// add records the routes of svc, keeping the keys already held.
func (sr sharedRoutes) add(svc *model.Service, routes []*model.Route) {
	for _, route := range routes {
		keys := sr[route.Port]
		if keys == nil {
			keys = map[string]routeOwner{}
			sr[route.Port] = keys
		}
		if _, taken := keys[route.Key]; !taken {
			keys[route.Key] = routeOwner{service: svc.Key(), route: route}
		}
	}
}

// addShared adds to t the filter and the route configuration of every shared port
// that a service declares, and the route server's cluster when there is one.
func addShared(t *Translation, ctx *generator.Context, reg generator.Registry, shared sharing, services []*model.Service, sr sharedRoutes) error {
	used := map[uint32]bool{}
	for _, svc := range services {
		for _, p := range svc.Ports {
			if shared.shares(p) {
				used[p.Number] = true
			}
		}
	}
	if len(used) == 0 {
		return nil
	}
	for _, port := range slices.Sorted(maps.Keys(used)) {
		proto := shared[port]
		keys := sr[port]
		routes := make([]*model.Route, 0, len(keys))
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			routes = append(routes, keys[k].route)
		}
		ef, rc, err := reg[proto].(generator.Sharer).Shared(ctx, port, routes)
		if err != nil {
			return fmt.Errorf("shared %s port %d: %w", proto, port, err)
		}
		t.Filters[ef.Key()] = ef
		t.Routes[rc.Name] = rc
	}
	ef, err := patch.RouteDiscoveryFilter(ctx)
	if err != nil {
		return err
	}
	t.Filters[ef.Key()] = ef
	return nil
}
