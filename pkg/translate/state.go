package translate

import (
	"maps"
	"slices"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

// index adds svc (delta +1) to the service indexes, or takes it out, noting its
// hosts and ports.
func (st *state) index(key string, svc *model.Service, delta int, reg generator.Registry, hosts map[string]bool, ports map[uint32]bool) {
	if svc == nil {
		return
	}
	for _, h := range svc.Hosts {
		hosts[h] = true
		updateKeys(st.byHost, h, key, delta)
	}
	for _, p := range svc.Ports {
		ports[p.Number] = true
		updateKeys(st.byPort, p.Number, key, delta)
		if sharer, ok := reg[p.Protocol].(generator.Sharer); ok && st.sharers != nil {
			for _, k := range sharer.Keys(svc, p) {
				st.sharers.count(p.Number, p.Protocol, k, delta)
			}
		}
	}
}

func updateKeys[K comparable](m map[K]model.Keys, k K, key string, delta int) {
	s := m[k]
	if delta > 0 {
		if s == nil {
			s = model.Keys{}
			m[k] = s
		}
		s.Add(key)
		return
	}
	delete(s, key)
	if len(s) == 0 {
		delete(m, k)
	}
}

// relookup sets the service a generator finds for host h: of those with the host,
// the first in the order of a translation. It reports whether a lookup now finds
// another service, or another version of it.
func (st *state) relookup(h string) bool {
	var first *model.Service
	for key := range st.byHost[h] {
		if svc := st.services[key]; first == nil || model.CompareServices(svc, first) < 0 {
			first = svc
		}
	}
	before := st.lookup[h]
	if first == nil {
		delete(st.lookup, h)
	} else {
		st.lookup[h] = first
	}
	return serviceIdentity(before) != serviceIdentity(first)
}

// indexResult adds a service's result (delta +1) to the result indexes, or takes it
// out.
func (st *state) indexResult(key string, r *serviceResult, delta int) {
	if r == nil {
		return
	}
	if delta > 0 {
		st.indexed[key] = r
	} else {
		delete(st.indexed, key)
	}
	for _, k := range r.keys {
		updateKeys(st.claims, k, key, delta)
	}
	for _, fp := range r.fingerprints {
		if fp != 0 {
			updateKeys(st.sameSpec, fp, key, delta)
		}
	}
	for _, d := range r.deps {
		switch d.kind {
		case hostDependency:
			updateKeys(st.hostDependents, d.name, key, delta)
		case secretDependency:
			updateKeys(st.secretDependents, d.namespace+"/"+d.name, key, delta)
		}
	}
}

// ties are the filter keys and fingerprints through which services decide for
// each other (see assemble).
type ties struct {
	keys map[string]bool
	fps  map[uint64]bool
}

func newTies() *ties { return &ties{keys: map[string]bool{}, fps: map[uint64]bool{}} }

func (t *ties) add(r *serviceResult) {
	if r == nil {
		return
	}
	for _, k := range r.keys {
		t.keys[k] = true
	}
	for _, fp := range r.fingerprints {
		if fp != 0 {
			t.fps[fp] = true
		}
	}
}

// component returns the services of changed and every service tied to them through
// seeds, or through a service so found: those whose assembly can decide what
// another of them gets. Assembling them alone, oldest first, gives what assembling
// every service would give them.
func (st *state) component(changed model.Keys, seeds *ties) model.Keys {
	members := maps.Clone(changed)
	doneKeys, doneFps := map[string]bool{}, map[uint64]bool{}
	for len(seeds.keys)+len(seeds.fps) > 0 {
		next := newTies()
		visit := func(keys model.Keys) {
			for key := range keys {
				if _, ok := members[key]; !ok {
					members.Add(key)
					next.add(st.indexed[key])
				}
			}
		}
		for k := range seeds.keys {
			if !doneKeys[k] {
				doneKeys[k] = true
				visit(st.claims[k])
			}
		}
		for fp := range seeds.fps {
			if !doneFps[fp] {
				doneFps[fp] = true
				visit(st.sameSpec[fp])
			}
		}
		seeds = next
	}
	return members
}

// assemble assembles the services of component again (see assembleServices) and
// puts the result in the translation in place of what they put there before; then
// the shared ports among ports and those of the component, and the verdicts of the
// Redis objects redis names, or that name a host of the component or of hosts.
func (tr *Translator) assemble(component model.Keys, redis []model.ObjectRef, ports map[uint32]bool, hosts map[string]bool) error {
	st, out := tr.st, tr.st.out
	before := map[string]*model.EnvoyFilter{}
	for key := range component {
		if pt := st.parts[key]; pt != nil {
			st.takeOut(key, pt, before)
		}
	}
	services := st.sortedServices(component)
	results := make([]*serviceResult, len(services))
	for i, svc := range services {
		results[i] = tr.cache[svc.Key()].result
	}
	parts := assembleServices(out, st.shared, services, results)
	for i, svc := range services {
		key := svc.Key()
		pt := parts[i]
		st.parts[key] = pt
		for _, k := range pt.filters {
			if _, seen := before[k]; !seen {
				before[k] = nil
			}
		}
		for _, p := range pt.protocols {
			out.Services[p]++
		}
		if _, failed := out.Failed[key]; !failed {
			tr.cache[key].good = results[i]
		}
		for _, p := range svc.Ports {
			ports[p.Number] = true
		}
		for _, h := range svc.Hosts {
			hosts[h] = true
		}
	}
	for k, was := range before {
		if out.Filters[k] != was {
			out.Changed[k] = true
		}
	}
	for key := range component {
		out.ChangedServices[key] = true
	}
	if st.shared != nil {
		for _, port := range slices.Sorted(maps.Keys(ports)) {
			if err := tr.sharePort(port); err != nil {
				return err
			}
		}
	}
	tr.verdicts(redis, hosts)
	return nil
}

// takeOut removes from the translation what a service put there, noting the filters
// it had.
func (st *state) takeOut(key string, pt *part, before map[string]*model.EnvoyFilter) {
	out := st.out
	for _, k := range pt.filters {
		if _, seen := before[k]; !seen {
			before[k] = out.Filters[k]
		}
		delete(out.Filters, k)
	}
	for _, k := range pt.duplicates {
		delete(out.Duplicates, k)
	}
	for _, k := range pt.failed {
		delete(out.Failed, k)
	}
	delete(out.Skipped, key)
	for _, p := range pt.protocols {
		if out.Services[p]--; out.Services[p] == 0 {
			delete(out.Services, p)
		}
	}
	delete(st.parts, key)
}

// sharePort puts in the translation the filter and route configuration of a shared
// port, from every service of the port (the route configuration is one resource:
// any change of a route sends all of it), or takes them out when the port is not
// shared or used any more; and the route server's cluster while any port is.
func (tr *Translator) sharePort(port uint32) error {
	st, out := tr.st, tr.st.out
	if pp, ok := st.portParts[port]; ok {
		if out.Filters[pp.filter] != nil {
			out.Changed[pp.filter] = true
		}
		delete(out.Filters, pp.filter)
		delete(out.Routes, pp.routes)
		delete(st.portParts, port)
		out.RoutesChanged = true
	}
	if _, shared := st.shared[port]; shared && len(st.byPort[port]) > 0 {
		services := st.sortedServices(st.byPort[port])
		order := oldestFirst(services)
		routes := sharedRoutes{}
		for _, failed := range []bool{false, true} {
			for _, i := range order {
				svc := services[i]
				c := tr.cache[svc.Key()]
				_, isFailed := out.Failed[svc.Key()]
				switch {
				case isFailed != failed:
				case !failed:
					routes.add(svc, onPort(c.result.routes, port))
				case c.good != nil && c.good.sharing == st.shared.signature(svc):
					routes.add(svc, onPort(c.good.routes, port))
				}
			}
		}
		ef, rc, err := sharedFilter(&tr.context, tr.registry, st.shared, port, routes)
		if err == nil {
			err = ef.Pack()
		}
		if err != nil {
			return err
		}
		out.Filters[ef.Key()], out.Routes[rc.Name] = ef, rc
		out.Changed[ef.Key()], out.RoutesChanged = true, true
		st.portParts[port] = portPart{filter: ef.Key(), routes: rc.Name}
	}
	return tr.discovery()
}

func onPort(routes []*model.Route, port uint32) []*model.Route {
	var out []*model.Route
	for _, r := range routes {
		if r.Port == port {
			out = append(out, r)
		}
	}
	return out
}

// discovery keeps the route server's cluster in the translation while a port is
// shared.
func (tr *Translator) discovery() error {
	st, out := tr.st, tr.st.out
	switch {
	case len(st.portParts) > 0 && st.discovery == nil:
		ef, err := patch.RouteDiscoveryFilter(&tr.context)
		if err == nil {
			err = ef.Pack()
		}
		if err != nil {
			return err
		}
		st.discovery = ef
		out.Filters[ef.Key()] = ef
		out.Changed[ef.Key()] = true
	case len(st.portParts) == 0 && st.discovery != nil:
		delete(out.Filters, st.discovery.Key())
		out.Changed[st.discovery.Key()] = true
		st.discovery = nil
	}
	return nil
}

// verdicts sets the verdicts of the Redis objects named, and of those bound to a host
// of hosts.
func (tr *Translator) verdicts(redis []model.ObjectRef, hosts map[string]bool) {
	st := tr.st
	refs := map[model.ObjectRef]bool{}
	for _, ref := range redis {
		refs[ref] = true
	}
	for _, ref := range st.builder.RedisObjectsOf(slices.Collect(maps.Keys(hosts))) {
		refs[ref] = true
	}
	for ref := range refs {
		kind := model.RedisServiceKind
		if ref.Kind == model.KindRedisDestination {
			kind = model.RedisDestinationKind
		}
		obj := st.builder.Objects(kind)[ref.Namespace+"/"+ref.Name]
		if obj == nil {
			if _, had := st.out.Verdicts[ref]; had {
				delete(st.out.Verdicts, ref)
				st.out.VerdictsChanged = true
			}
			continue
		}
		var bound []*model.Service
		for _, h := range model.HostsOf(*obj, st.builder.Snapshot().DomainSuffix) {
			for key := range st.byHost[h] {
				if svc := st.services[key]; hasRedisPort(svc) && !slices.Contains(bound, svc) {
					bound = append(bound, svc)
				}
			}
		}
		slices.SortFunc(bound, model.CompareServices)
		v := verdict(ref, *obj, st.builder.Snapshot(), bound, st.out.Failed)
		if have, had := st.out.Verdicts[ref]; !had || have != v {
			st.out.Verdicts[ref] = v
			st.out.VerdictsChanged = true
		}
	}
}
