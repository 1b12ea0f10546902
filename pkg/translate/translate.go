// Package translate turns a snapshot of the mesh config into the desired
// EnvoyFilters: it builds the services, calls each port's generator (reusing a
// service's result while nothing it was built from changed), decides conflicts, and
// says for each RedisService and RedisDestination whether it is in effect. It is
// pure: it reads only the snapshot, and writes nothing.
//
// With a route server (generator.Context.RouteDiscovery), a port that only one
// sharing protocol declares, with a distinct key per service, is shared: one
// EnvoyFilter puts the protocol's filter on every client listener of the port, and
// the services' routes become one route configuration the server serves by name
// (Translation.Routes). The reason is istiod's cost: it walks every listener patch
// that applies to a sidecar for every filter of every listener it builds, so one
// patch per service makes each sidecar's build grow with services x services, and
// one per port does not (BENCHMARKS.md, "What our EnvoyFilters cost istiod"). Ports
// that cannot be shared keep a patch per service and address, with routes inline.
//
// Where the sidecars of a namespace see other routing for a service than every
// namespace does (model.Service.Views: a VirtualService or DestinationRule exported
// to some namespaces only, or a client namespace's own DestinationRule), the
// service's client side is generated again as that namespace sees it, into an
// EnvoyFilter of that namespace at ViewPriority. istiod applies it to that
// namespace's sidecars only, before the mesh-wide filter of the root namespace,
// which then finds no tcp_proxy to replace on the listener; a shared port's
// listener of the service gets it too, routes inline. A namespace's view that fails
// is that namespace's failure alone (ViewKey).
package translate

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

// Translation is the desired state computed from a set of services.
type Translation struct {
	// Filters are the desired EnvoyFilters by key (namespace/name).
	Filters map[string]*model.EnvoyFilter
	// Routes are the route configurations that shared filters name, by name: what
	// the route server serves (see generator.Sharer).
	Routes map[string]*model.RouteConfig
	// Failed are the services whose generation failed, by key, and the failed views
	// of services, by ViewKey. Their EnvoyFilters from earlier pushes (a view's: the
	// service's in that namespace) must be kept as they are.
	Failed map[string]*ServiceError
	// Skipped are the service ports a generator chose to leave as plain TCP, with why,
	// by service key. They are not failures: the service's other ports generate.
	Skipped map[string][]*ServiceError
	// Services counts the services with at least one generated port, by protocol.
	Services map[model.Protocol]int
	// ByKey are the services translated, by key: what reports about them name.
	ByKey map[string]*model.Service
	// Verdicts say, for every RedisService and RedisDestination of the snapshot,
	// whether it is in effect: what its Ready condition reports.
	Verdicts map[model.ObjectRef]model.Verdict
	// Generated and Reused count the services generated afresh and those whose
	// earlier result was reused (see Translator).
	Generated, Reused int
	// Changed are the keys of the filters added, replaced or removed by the last
	// translation; ChangedServices the services whose failures it may have changed
	// (see Failed): what a plan after an Update has to look at.
	Changed, ChangedServices map[string]bool
	// VerdictsChanged and RoutesChanged say the last translation changed Verdicts,
	// or Routes.
	VerdictsChanged, RoutesChanged bool
	// Duplicates are the server-side filters left out because an older service's
	// filter of the same namespace and spec (so of the same workloads) serves: the
	// key of each one left out, to the key of the one written. Two such filters
	// would compete for one filter chain (see assemble).
	Duplicates map[string]string
}

// ErrConflict marks a service that wants an EnvoyFilter another service already has.
var ErrConflict = errors.New("conflict")

// ServiceError is a generation failure of one service port.
type ServiceError struct {
	Service  *model.Service
	Port     *model.Port
	Protocol model.Protocol
	// View is the namespace whose view of the service failed (see generateView);
	// empty when the service itself failed.
	View string
	Err  error
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s %s port %d (%s): %v", e.Service.Kind(), e.Service.Key(), e.Port.Number, e.Protocol, e.Err)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// Translate translates snap once, generating every service: the translation of
// `aeraki generate`, and of a Translator's first push.
func Translate(ctx generator.Context, reg generator.Registry, snap *model.Snapshot) (*Translation, error) {
	return NewTranslator(ctx, reg).Translate(snap)
}

// serviceResult is what the generators made of one service.
type serviceResult struct {
	filters []*model.EnvoyFilter
	// routes are the service's parts of shared ports' routes.
	routes []*model.Route
	// sharing is the signature of the shared ports it was generated with.
	sharing string
	// keys are the filters' keys, made once: every push looks them up.
	keys []string
	// ports are the ports that generated each filter.
	ports []*model.Port
	// fingerprints are the server-side filters' (see fingerprint), 0 for the
	// others: assemble compares them on every push, so they are made once.
	fingerprints []uint64
	protocols    []model.Protocol
	skipped      []*ServiceError
	err          *ServiceError
	// viewErrs are the failed views of a service that did not fail itself.
	viewErrs []*ServiceError
	// deps are the lookups the generators made (see lookup).
	deps []dependency
}

// generateAll generates the services into results, in parallel: generators are
// pure, and a full push of a large mesh is all generation.
func generateAll(p *pushLookup, ctx *generator.Context, reg generator.Registry, shared sharing, services []*model.Service, results []*serviceResult) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(services)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(services) {
					return
				}
				results[i] = generateService(p, ctx, reg, shared, services[i])
			}
		})
	}
	wg.Wait()
}

// assembleServices puts the services' results (by service index) into t and
// returns what each put there. Conflicts are decided oldest first (creation time,
// then namespace/name), as Istio decides precedence: a newer object, of any
// namespace, cannot take what an older one has.
//
// A server-side filter equal to one an older service contributed (several
// ServiceEntries of the same workloads and port, one per Dubbo interface, as
// registry bridges make them) is left out: the older one serves both. Written
// twice, istiod would apply the first and the second would find no tcp_proxy left
// to replace. Only a service that contributes serves another: when the older one is
// deleted or fails, the younger one's filter is written again (beside the failed
// one's, kept as applied, and equal to it unless its config changed), so that one
// service's failure costs no other its filter, and the translation stays a
// function of the services' results, the same incremental or full.
//
// Services decide for each other only through a filter key or a server-side
// filter's spec they share: t must hold nothing of the services that share one with
// these (see Translator.assemble).
func assembleServices(t *Translation, shared sharing, services []*model.Service, results []*serviceResult) []*part {
	parts := make([]*part, len(services))
	served := servedFilters{byFingerprint: map[uint64]*model.EnvoyFilter{}}
	for _, i := range oldestFirst(services) {
		svc, r := services[i], results[i]
		pt := &part{}
		parts[i] = pt
		if len(r.skipped) > 0 {
			t.Skipped[svc.Key()] = slices.Clone(r.skipped)
		}
		serr := r.err
		if serr == nil {
			serr = conflict(t.Filters, served.leftOut, r, svc)
		}
		if serr != nil {
			t.Failed[svc.Key()] = serr
			pt.failed = append(pt.failed, svc.Key())
			continue
		}
		for j, ef := range r.filters {
			if by := served.leaveOut(r.fingerprints[j], ef, r.keys[j], svc); by != nil {
				t.Duplicates[r.keys[j]] = by.Key()
				pt.duplicates = append(pt.duplicates, r.keys[j])
				continue
			}
			t.Filters[r.keys[j]] = ef
			pt.filters = append(pt.filters, r.keys[j])
		}
		for _, verr := range r.viewErrs {
			t.Failed[ViewKey(svc.Key(), verr.View)] = verr
			pt.failed = append(pt.failed, ViewKey(svc.Key(), verr.View))
		}
		// Allocated addresses are listeners of the service's own, on the sidecars
		// that capture DNS.
		if len(svc.Addresses) == 0 && len(svc.Allocated) == 0 && len(r.filters) > 0 {
			if notes := noAddress(svc, r.protocols, shared); len(notes) > 0 {
				t.Skipped[svc.Key()] = append(t.Skipped[svc.Key()], notes...)
			}
		}
		pt.protocols = r.protocols
	}
	return parts
}

func generateService(p *pushLookup, ctx *generator.Context, reg generator.Registry, shared sharing, svc *model.Service) *serviceResult {
	r := &serviceResult{sharing: shared.signature(svc)}
	l := &lookup{push: p}
	defer func() { r.deps = l.deps }()
	ctx = ctx.WithLookup(l)
	for _, port := range svc.Ports {
		gen, ok := reg[port.Protocol]
		if !ok {
			continue
		}
		var efs []*model.EnvoyFilter
		var routes []*model.Route
		var err error
		if shared.shares(port) {
			efs, routes, err = generateShared(ctx, gen.(generator.Sharer), svc, port)
		} else {
			efs, err = gen.Generate(ctx, svc, port)
		}
		if err == nil {
			err = checkSizes(efs)
		}
		if errors.Is(err, patch.ErrNoListener) {
			// Nothing of the user's to fix: the port has no listener of its own.
			err = &generator.SkipError{Reason: NoAddressReason + "; and it selects no workloads, so there is no inbound side either"}
		}
		var skip *generator.SkipError
		if errors.As(err, &skip) {
			r.skipped = append(r.skipped, &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: err})
			continue
		}
		if err != nil {
			return r.fail(&ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: err})
		}
		for _, ef := range efs {
			r.filters = append(r.filters, ef)
			r.keys = append(r.keys, ef.Key())
			r.ports = append(r.ports, port)
		}
		r.routes = append(r.routes, routes...)
		if !slices.Contains(r.protocols, port.Protocol) {
			r.protocols = append(r.protocols, port.Protocol)
		}
	}
	for _, v := range svc.Views {
		if serr := generateView(ctx, reg, svc, v, r); serr != nil {
			r.viewErrs = append(r.viewErrs, serr)
		}
	}
	r.fingerprints = make([]uint64, len(r.filters))
	for i, ef := range r.filters {
		server := ef.Spec.GetWorkloadSelector() != nil
		if err := ef.Pack(); err != nil {
			return r.fail(&ServiceError{Service: svc, Port: r.ports[i], Protocol: r.ports[i].Protocol, Err: err})
		}
		r.fingerprints[i] = fingerprint(ef, server)
	}
	return r
}

// fail makes r the result of a service whose generation failed: the error and
// nothing else, so that it claims no filter name and writes no spec.
func (r *serviceResult) fail(err *ServiceError) *serviceResult {
	r.filters, r.keys, r.ports, r.protocols, r.skipped, r.routes, r.fingerprints = nil, nil, nil, nil, nil, nil, nil
	r.err = err
	return r
}

// fingerprint hashes the namespace and spec of a server-side filter (one with a
// workload selector: it applies to those workloads of its namespace alone), packed
// (see model.EnvoyFilter.Pack); 0 for the others, which are never left out.
func fingerprint(ef *model.EnvoyFilter, server bool) uint64 {
	if !server {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(ef.Namespace)) // never fails
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(ef.Digest()))
	return max(h.Sum64(), 1)
}

// servedFilters are the server-side filters a push has written so far, by
// fingerprint, and the keys of those it left out, with the service of each.
type servedFilters struct {
	byFingerprint map[uint64]*model.EnvoyFilter
	leftOut       map[string]string
}

// leaveOut reports the filter written before whose namespace and spec equal those
// of ef (key, of service owner), recording ef as left out; or records ef as
// written and returns nil. A fingerprint of another filter (a hash collision) is
// no match: ef is written.
func (s *servedFilters) leaveOut(fp uint64, ef *model.EnvoyFilter, key string, owner *model.Service) *model.EnvoyFilter {
	if fp == 0 {
		return nil
	}
	have, ok := s.byFingerprint[fp]
	if !ok {
		s.byFingerprint[fp] = ef
		return nil
	}
	if have.Namespace != ef.Namespace || !have.SameSpec(ef) {
		return nil
	}
	if s.leftOut == nil {
		s.leftOut = map[string]string{}
	}
	s.leftOut[key] = owner.Key()
	return have
}

// ViewPriority is the priority of the EnvoyFilters that give one namespace's
// sidecars their own view of a service: before the root namespace's filter of the
// same listener, which then finds no tcp_proxy left to replace (istiod applies
// EnvoyFilters by priority first, of whatever namespace).
const ViewPriority = -1

// ViewKey is the key of a failed view in Translation.Failed: the service's key and
// the namespace. The service's EnvoyFilters in that namespace are kept as they are.
func ViewKey(service, namespace string) string { return service + "@" + namespace }

// generateView adds to r the client side of svc as the sidecars of v's namespace
// see it: a filter per listener, in that namespace, routes inline, also for a
// shared port, whose filter is keyed by port only. A filter equal to the one every
// namespace gets is left out. A failure is the view's alone: it adds nothing, and
// takes out of r the service's filters in the namespace, so that the ones applied
// before stay; the rest of the service and the other namespaces go on.
func generateView(ctx *generator.Context, reg generator.Registry, svc *model.Service, v *model.View, r *serviceResult) *ServiceError {
	view := svc.InView(v)
	view.WorkloadSelector = nil // the server side is the same for every client
	var efs []*model.EnvoyFilter
	var ports []*model.Port
	for _, port := range svc.Ports {
		gen, ok := reg[port.Protocol]
		if !ok {
			continue
		}
		got, err := gen.Generate(ctx, view, port)
		if err == nil {
			err = checkSizes(got)
		}
		var skip *generator.SkipError
		if errors.As(err, &skip) || errors.Is(err, patch.ErrNoListener) {
			continue
		}
		if err != nil {
			r.dropClients(v.Namespace)
			return &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, View: v.Namespace,
				Err: fmt.Errorf("as the sidecars of namespace %s see it: %w", v.Namespace, err)}
		}
		for range got {
			ports = append(ports, port)
		}
		efs = append(efs, got...)
	}
	for i, ef := range efs {
		r.addView(ctx, ef, ports[i])
	}
	return nil
}

// addView adds a view's filter, in place of the service's own filter of the same
// key (a service only some namespaces see has one per namespace), unless the
// filter every namespace gets is the same.
func (r *serviceResult) addView(ctx *generator.Context, ef *model.EnvoyFilter, port *model.Port) {
	for i, have := range r.filters {
		switch {
		case have.Namespace == ctx.RootNamespace && have.Name == ef.Name && proto.Equal(have.Spec, ef.Spec):
			return
		case have.Key() == ef.Key():
			if !proto.Equal(have.Spec, ef.Spec) {
				ef.Spec.Priority = ViewPriority
				r.filters[i] = ef
			}
			return
		}
	}
	ef.Spec.Priority = ViewPriority
	r.filters = append(r.filters, ef)
	r.keys = append(r.keys, ef.Key())
	r.ports = append(r.ports, port)
}

// dropClients takes out the client side filters of namespace ns (a service only
// some namespaces see has them there).
func (r *serviceResult) dropClients(ns string) {
	for i := len(r.filters) - 1; i >= 0; i-- {
		if ef := r.filters[i]; ef.Namespace == ns && ef.Spec.GetWorkloadSelector() == nil {
			r.filters = slices.Delete(r.filters, i, i+1)
			r.keys = slices.Delete(r.keys, i, i+1)
			r.ports = slices.Delete(r.ports, i, i+1)
		}
	}
}

// oldestFirst returns the indexes of services (sorted by key) by creation time, then key.
func oldestFirst(services []*model.Service) []int {
	order := make([]int, len(services))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return services[a].Created.Compare(services[b].Created) })
	return order
}

// checkSizes fails when an EnvoyFilter is too large to write.
func checkSizes(efs []*model.EnvoyFilter) error {
	for _, ef := range efs {
		if err := ef.CheckSize(); err != nil {
			return err
		}
	}
	return nil
}

// generateShared generates a shared port: the server side of the service's own, the
// client side as its part of the port's routes.
func generateShared(ctx *generator.Context, gen generator.Sharer, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, []*model.Route, error) {
	efs, err := gen.Inbound(ctx, svc, port)
	if err != nil {
		return nil, nil, err
	}
	routes, err := gen.Routes(ctx, svc, port)
	if err != nil {
		return nil, nil, err
	}
	return efs, routes, nil
}

// NoAddressReason is the note on every port of a Kubernetes Service without an
// address (headless, without endpoints yet).
const NoAddressReason = "the service has no address (a headless Service, or a ServiceEntry without addresses): " +
	"clients' outbound listeners stay plain TCP; only the workloads' inbound side gets the filter"

// NoAllocatedAddressReason is the note on every port of a ServiceEntry without
// addresses that Istio has not allocated one for: it says how Istio would.
const NoAllocatedAddressReason = "the ServiceEntry has no address, and Istio has allocated none into its status.addresses: " +
	"clients' outbound listeners stay plain TCP; only the workloads' inbound side gets the filter. Istio allocates one " +
	"when istiod runs with PILOT_ENABLE_IP_AUTOALLOCATE=true (the default), for entries not resolved NONE and not " +
	"labelled networking.istio.io/enable-autoallocate-ip=false; sidecars use it with DNS capture " +
	"(ISTIO_META_DNS_CAPTURE: \"true\" in their proxy metadata)"

// noAddress tells that a service without an address (a headless Service, or a
// ServiceEntry without addresses) gets only its inbound side: clients reach it through
// per-endpoint or shared listeners that are not the service's own. A shared port is
// different: its filter is on every client listener of the port number, those too.
func noAddress(svc *model.Service, protocols []model.Protocol, shared sharing) []*ServiceError {
	var out []*ServiceError
	for _, port := range svc.Ports {
		if !slices.Contains(protocols, port.Protocol) || shared.shares(port) || port.Wildcard {
			continue
		}
		reason := NoAddressReason
		if !svc.Synthetic {
			reason = NoAllocatedAddressReason
		}
		out = append(out, &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: &generator.SkipError{Reason: reason}})
	}
	return out
}

// conflict reports the first of a service's filters that an earlier service already
// has (written, or left out as a duplicate: leftOut, key to service), or that the
// service generates twice, naming the port that generated it.
func conflict(have map[string]*model.EnvoyFilter, leftOut map[string]string, r *serviceResult, svc *model.Service) *ServiceError {
	keys := r.keys
	for i, key := range keys {
		owner, taken := leftOut[key]
		if other, ok := have[key]; ok {
			owner, taken = other.Annotations[model.ServiceAnnotation], true
		}
		if !taken && !slices.Contains(keys[:i], key) {
			continue
		}
		if !taken {
			owner = svc.Key()
		}
		port := r.ports[i]
		return &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: fmt.Errorf(
			"%w: EnvoyFilter %s is also generated for %s: the services share a host and port", ErrConflict, key, owner)}
	}
	return nil
}

// SortedFilters returns the filters ordered by key, their specs unpacked (see
// model.EnvoyFilter.Pack): for printing and reading, not for a push.
func SortedFilters(filters map[string]*model.EnvoyFilter) []*model.EnvoyFilter {
	out := make([]*model.EnvoyFilter, 0, len(filters))
	for _, k := range slices.Sorted(maps.Keys(filters)) {
		out = append(out, filters[k].Unpacked())
	}
	return out
}

// SortedErrors returns the failures ordered by service key.
func SortedErrors(failed map[string]*ServiceError) []*ServiceError {
	out := make([]*ServiceError, 0, len(failed))
	for _, k := range slices.Sorted(maps.Keys(failed)) {
		out = append(out, failed[k])
	}
	return out
}
