package envoyfilter

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"aeraki.io/aeraki/pkg/model"
)

// Translation is the desired state computed from a set of services.
type Translation struct {
	// Filters are the desired EnvoyFilters by key (namespace/name).
	Filters map[string]*model.EnvoyFilter
	// Failed are the services whose generation failed, by key. Their EnvoyFilters
	// from earlier pushes must be kept as they are.
	Failed map[string]*ServiceError
	// Skipped are the service ports a generator chose to leave as plain TCP, with why,
	// by service key. They are not failures: the service's other ports generate.
	Skipped map[string][]*ServiceError
	// Services counts the services with at least one generated port, by protocol.
	Services map[model.Protocol]int
}

// SkipError is returned by a generator that leaves a port to Istio as plain TCP on
// purpose (for example a filter the sidecars' proxy build lacks). The reason is told
// to the user once; nothing fails.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

// ErrConflict marks a service that wants an EnvoyFilter another service already has.
var ErrConflict = errors.New("conflict")

// ServiceError is a generation failure of one service port.
type ServiceError struct {
	Service  *model.Service
	Port     *model.Port
	Protocol model.Protocol
	Err      error
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("%s %s port %d (%s): %v", e.Service.Kind(), e.Service.Key(), e.Port.Number, e.Protocol, e.Err)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// Translate calls the generator of every supported port of every service. A service
// is all or nothing: if one of its ports fails, none of its filters are desired and it
// is listed in Failed. Two services that want the same EnvoyFilter name conflict; the
// first by key keeps it.
func Translate(ctx *Context, reg Registry, services []*model.Service) *Translation {
	results := make([]*serviceResult, len(services))
	generateAll(ctx, reg, services, results, func(int) bool { return true })
	return assemble(services, results)
}

// serviceResult is what the generators made of one service.
type serviceResult struct {
	filters []*model.EnvoyFilter
	// keys are the filters' keys, made once: every push looks them up.
	keys      []string
	protocols []model.Protocol
	skipped   []*ServiceError
	err       *ServiceError
	// deps are the lookups the generators made (see Context.Service and Secret).
	deps []dependency
}

// generateAll generates the services for which todo is true into results, in
// parallel: generators are pure, and a full push of a large mesh is all generation.
func generateAll(ctx *Context, reg Registry, services []*model.Service, results []*serviceResult, todo func(int) bool) int {
	var next atomic.Int64
	var generated atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(services)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(services) {
					return
				}
				if !todo(i) {
					continue
				}
				results[i] = generateService(ctx, reg, services[i])
				generated.Add(1)
			}
		})
	}
	wg.Wait()
	return int(generated.Load())
}

// assemble builds the translation from the services' results, in service order, so
// that conflicts are decided the same way every time.
func assemble(services []*model.Service, results []*serviceResult) *Translation {
	t := &Translation{
		Filters:  map[string]*model.EnvoyFilter{},
		Failed:   map[string]*ServiceError{},
		Skipped:  map[string][]*ServiceError{},
		Services: map[model.Protocol]int{},
	}
	for i, svc := range services {
		r := results[i]
		if len(r.skipped) > 0 {
			t.Skipped[svc.Key()] = slices.Clone(r.skipped)
		}
		serr := r.err
		if serr == nil {
			serr = conflict(t.Filters, r.keys, svc)
		}
		if serr != nil {
			t.Failed[svc.Key()] = serr
			continue
		}
		for i, ef := range r.filters {
			t.Filters[r.keys[i]] = ef
		}
		if len(svc.Addresses) == 0 && len(r.filters) > 0 {
			t.Skipped[svc.Key()] = append(t.Skipped[svc.Key()], noAddress(svc, r.protocols)...)
		}
		for _, p := range r.protocols {
			t.Services[p]++
		}
	}
	return t
}

func generateService(ctx *Context, reg Registry, svc *model.Service) *serviceResult {
	r := &serviceResult{}
	ctx = ctx.recording(&r.deps)
	for _, port := range svc.Ports {
		gen, ok := reg[port.Protocol]
		if !ok {
			continue
		}
		efs, err := gen.Generate(ctx, svc, port)
		var skip *SkipError
		if errors.As(err, &skip) {
			r.skipped = append(r.skipped, &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: err})
			continue
		}
		if err != nil {
			return &serviceResult{err: &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: err}, deps: r.deps}
		}
		for _, ef := range efs {
			r.filters = append(r.filters, ef)
			r.keys = append(r.keys, ef.Key())
		}
		if !slices.Contains(r.protocols, port.Protocol) {
			r.protocols = append(r.protocols, port.Protocol)
		}
	}
	return r
}

// NoAddressReason is the note on every port of a service without an address.
const NoAddressReason = "the service has no address (a headless Service, or a ServiceEntry without addresses): " +
	"clients' outbound listeners stay plain TCP; only the workloads' inbound side gets the filter"

// noAddress tells that a service without an address (a headless Service, or a
// ServiceEntry without addresses) gets only its inbound side: clients reach it through
// per-endpoint or shared listeners that are not the service's own.
func noAddress(svc *model.Service, protocols []model.Protocol) []*ServiceError {
	var out []*ServiceError
	for _, port := range svc.Ports {
		if !slices.Contains(protocols, port.Protocol) {
			continue
		}
		out = append(out, &ServiceError{Service: svc, Port: port, Protocol: port.Protocol, Err: &SkipError{Reason: NoAddressReason}})
	}
	return out
}

func conflict(have map[string]*model.EnvoyFilter, keys []string, svc *model.Service) *ServiceError {
	for i, key := range keys {
		other, taken := have[key]
		if !taken && !slices.Contains(keys[:i], key) {
			continue
		}
		owner := svc.Key()
		if taken {
			owner = other.Annotations[model.ServiceAnnotation]
		}
		return &ServiceError{Service: svc, Port: svc.Ports[0], Protocol: svc.Ports[0].Protocol, Err: fmt.Errorf(
			"%w: EnvoyFilter %s is also generated for %s: the services share a host and port", ErrConflict, key, owner)}
	}
	return nil
}

// SortedFilters returns the filters ordered by key.
func SortedFilters(filters map[string]*model.EnvoyFilter) []*model.EnvoyFilter {
	out := make([]*model.EnvoyFilter, 0, len(filters))
	for _, k := range slices.Sorted(maps.Keys(filters)) {
		out = append(out, filters[k])
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
