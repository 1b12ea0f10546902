package envoyfilter

import (
	"aeraki.io/aeraki/pkg/model"
)

// Translator translates like Translate, but keeps each service's result and reuses
// it while nothing the service was built from changed: its own version (see
// model.Service.Version) and every lookup its generators made into other services
// and Secrets. A push after one change then generates only the services it touches.
// It is not safe for concurrent use; the controller's pushes run one at a time.
type Translator struct {
	context  Context
	registry Registry
	cache    map[string]*cached
}

type cached struct {
	version string
	result  *serviceResult
}

// dependency is one lookup of a generator, with what it found.
type dependency struct {
	kind dependencyKind
	// namespace and name of a Secret; name alone is a host.
	namespace, name string
	version         string
}

type dependencyKind int

const (
	hostDependency dependencyKind = iota
	secretDependency
)

// serviceIdentity is what a host lookup found: the service and its version.
func serviceIdentity(svc *model.Service) string {
	if svc == nil {
		return ""
	}
	return svc.Key() + "@" + svc.Version
}

// NewTranslator returns a translator with an empty cache.
func NewTranslator(ctx Context, reg Registry) *Translator {
	return &Translator{context: ctx, registry: reg, cache: map[string]*cached{}}
}

// Reset forgets every result: the next translation generates every service. The
// controller's periodic resync uses it, so that nothing a cache key might miss
// outlives one resync period.
func (tr *Translator) Reset() {
	tr.cache = map[string]*cached{}
}

// Translate returns the translation of the services of snap, and how many of them
// were generated (the others were reused).
func (tr *Translator) Translate(snap *model.Snapshot, services []*model.Service) (*Translation, int) {
	ctx := tr.context.ForPush(snap, services)
	results := make([]*serviceResult, len(services))
	for i, svc := range services {
		if c, ok := tr.cache[svc.Key()]; ok && c.version == svc.Version && ctx.unchanged(c.result.deps) {
			results[i] = c.result
		}
	}
	generated := generateAll(ctx, tr.registry, services, results, func(i int) bool { return results[i] == nil })
	next := make(map[string]*cached, len(services))
	for i, svc := range services {
		next[svc.Key()] = &cached{version: svc.Version, result: results[i]}
	}
	tr.cache = next
	return assemble(services, results), generated
}

// unchanged reports whether every lookup finds what it found before.
func (c *Context) unchanged(deps []dependency) bool {
	for _, d := range deps {
		var now string
		switch d.kind {
		case hostDependency:
			now = serviceIdentity(c.services[d.name])
		case secretDependency:
			now = model.SecretVersion(c.secretOrNil(d.namespace, d.name))
		}
		if now != d.version {
			return false
		}
	}
	return true
}
