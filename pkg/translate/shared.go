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
// same protocol, that protocol's generator can share, and no two services of the port
// have the same key: two services of one interface are told apart only by the address
// their clients dial, which a shared filter no longer sees.
type sharing map[uint32]model.Protocol

func sharedPorts(ctx *generator.Context, reg generator.Registry, snap *model.Snapshot, services []*model.Service) sharing {
	if ctx.RouteDiscovery == nil {
		return nil
	}
	seen := map[uint32]model.Protocol{}
	unshared := map[uint32]bool{}
	for _, c := range snap.ServiceEntries {
		se, ok := c.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, p := range se.GetPorts() {
			proto := model.ParsePortName(p.GetName())
			if have, ok := seen[p.GetNumber()]; ok && have != proto {
				unshared[p.GetNumber()] = true
			}
			seen[p.GetNumber()] = proto
		}
	}
	keys := map[uint32]map[string]bool{}
	for _, svc := range services {
		for _, p := range svc.Ports {
			sharer, ok := reg[p.Protocol].(generator.Sharer)
			if !ok || seen[p.Number] != p.Protocol {
				continue
			}
			for _, key := range sharer.Keys(svc, p) {
				if keys[p.Number] == nil {
					keys[p.Number] = map[string]bool{}
				}
				if keys[p.Number][key] {
					unshared[p.Number] = true
				}
				keys[p.Number][key] = true
			}
		}
	}
	out := sharing{}
	for port, proto := range seen {
		if _, ok := reg[proto].(generator.Sharer); ok && !unshared[port] {
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

// add records the routes of svc, keeping the keys already held: a port is shared only
// while its services' keys are distinct (see sharedPorts), but a failed service's
// earlier routes may have had another key.
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
