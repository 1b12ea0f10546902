package translate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// sharing says which ports the client listeners share (see generator.Sharer): port
// number to protocol. A shared port's filter matches every TCP listener of the port
// number in every sidecar, so a port is shared only when each port of that number,
// of every ServiceEntry istiod knows (Kubernetes Services included), declares the
// same protocol, that protocol's generator can share, and no two services of the port
// have the same key: two services of one interface are told apart only by the address
// their clients dial, which a shared filter no longer sees. nil without a route server.
type sharing map[uint32]model.Protocol

// shareKeys count the keys (see generator.Sharer.Keys) of the services' ports, by
// port number and protocol, and how many are held by more than one service.
type shareKeys struct {
	counts   map[portProtocol]map[string]int
	repeated map[portProtocol]int
}

type portProtocol struct {
	port     uint32
	protocol model.Protocol
}

func (s *shareKeys) count(port uint32, proto model.Protocol, key string, delta int) {
	pp := portProtocol{port, proto}
	if s.counts == nil {
		s.counts, s.repeated = map[portProtocol]map[string]int{}, map[portProtocol]int{}
	}
	keys := s.counts[pp]
	if keys == nil {
		keys = map[string]int{}
		s.counts[pp] = keys
	}
	before := keys[key]
	keys[key] += delta
	switch {
	case before == 1 && keys[key] == 2:
		s.repeated[pp]++
	case before == 2 && keys[key] == 1:
		s.repeated[pp]--
	}
	if keys[key] == 0 {
		delete(keys, key)
	}
}

// reshare decides again whether port is shared; it reports a change.
func (st *state) reshare(reg generator.Registry, port uint32) bool {
	proto, single := st.builder.PortProtocol(port)
	_, sharer := reg[proto].(generator.Sharer)
	now := single && sharer && st.sharers.repeated[portProtocol{port, proto}] == 0
	have, was := st.shared[port]
	switch {
	case now && (!was || have != proto):
		st.shared[port] = proto
	case !now && was:
		delete(st.shared, port)
	default:
		return false
	}
	return true
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

// sharedFilter returns the filter and the route configuration of a shared port.
func sharedFilter(ctx *generator.Context, reg generator.Registry, shared sharing, port uint32, sr sharedRoutes) (*model.EnvoyFilter, *model.RouteConfig, error) {
	proto := shared[port]
	keys := sr[port]
	routes := make([]*model.Route, 0, len(keys))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		routes = append(routes, keys[k].route)
	}
	ef, rc, err := reg[proto].(generator.Sharer).Shared(ctx, port, routes)
	if err != nil {
		return nil, nil, fmt.Errorf("shared %s port %d: %w", proto, port, err)
	}
	return ef, rc, nil
}
