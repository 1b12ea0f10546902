package translate

import (
	"sync"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// Translator translates push after push, keeping each service's result and reusing
// it while nothing the service was built from changed: its own version (see
// model.Service.Version) and every lookup its generators made into other services
// and Secrets. A push after one change then generates only the services it touches.
// It is not safe for concurrent use; the controller's pushes run one at a time.
type Translator struct {
	context  generator.Context
	registry generator.Registry
	cache    map[string]*cached
}

type cached struct {
	version string
	result  *serviceResult
	// good is the last result that did not fail: its routes stay served while the
	// service fails.
	good *serviceResult
}

// NewTranslator returns a translator with an empty cache.
func NewTranslator(ctx generator.Context, reg generator.Registry) *Translator {
	return &Translator{context: ctx, registry: reg, cache: map[string]*cached{}}
}

// SetIstiod sets the istiod the next translations are for. A change forgets every
// result: what a generator may emit depends on it. It reports whether it changed.
func (tr *Translator) SetIstiod(i model.Istiod) bool {
	if tr.context.Istiod == i {
		return false
	}
	tr.context.Istiod = i
	tr.Reset()
	return true
}

// Reset forgets every result: the next translation generates every service. The
// controller's periodic resync uses it, so that nothing a cache key might miss
// outlives one resync period.
func (tr *Translator) Reset() {
	tr.cache = map[string]*cached{}
}

// Translate returns the translation of snap. An error reading the snapshot (a
// lookup that failed for a reason other than absence) fails the whole translation:
// a partial view would drop routes or filters the user still wants. The cache is
// then left as it was.
func (tr *Translator) Translate(snap *model.Snapshot) (*Translation, error) {
	if snap.RootNamespace != tr.context.RootNamespace {
		// The context's root namespace is the one the output is written for.
		scoped := *snap
		scoped.RootNamespace = tr.context.RootNamespace
		snap = &scoped
	}
	services, err := model.BuildServices(snap)
	if err != nil {
		return nil, err
	}
	p := &pushLookup{services: model.NewHostIndex(services), secret: snap.Secret}
	shared := sharedPorts(&tr.context, tr.registry, snap, services)
	results := make([]*serviceResult, len(services))
	kept := make([]*serviceResult, len(services))
	for i, svc := range services {
		c, ok := tr.cache[svc.Key()]
		if !ok {
			continue
		}
		kept[i] = c.good
		if c.version == svc.Version && c.result.sharing == shared.signature(svc) && p.unchanged(c.result.deps) {
			results[i] = c.result
		}
	}
	generated := generateAll(p, &tr.context, tr.registry, shared, services, results, func(i int) bool { return results[i] == nil })
	if err := p.failed(); err != nil {
		return nil, err
	}
	t, err := assemble(&tr.context, tr.registry, shared, services, results, kept)
	if err != nil {
		return nil, err
	}
	next := make(map[string]*cached, len(services))
	for i, svc := range services {
		c := &cached{version: svc.Version, result: results[i], good: kept[i]}
		if _, failed := t.Failed[svc.Key()]; !failed {
			c.good = results[i]
		}
		next[svc.Key()] = c
	}
	tr.cache = next
	t.Generated, t.Reused = generated, len(services)-generated
	t.Verdicts = verdicts(snap, services, t.Failed)
	return t, nil
}

// pushLookup is what the generators of one push may look up: the push's services by
// host and its Secrets. It keeps the first error of a Secret read; generation goes
// on (the generator sees no Secret) and the translation fails at the end.
type pushLookup struct {
	services model.HostIndex
	secret   func(namespace, name string) (*model.Secret, error)

	mu  sync.Mutex
	err error
	// secrets are the Secrets read in this push, by namespace/name: each is read once
	// (they come from the apiserver), however many services name it.
	secrets map[string]*model.Secret
}

func (p *pushLookup) getSecret(namespace, name string) *model.Secret {
	if p.secret == nil {
		return nil
	}
	key := namespace + "/" + name
	p.mu.Lock()
	s, seen := p.secrets[key]
	p.mu.Unlock()
	if seen {
		return s
	}
	s, err := p.secret(namespace, name)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == nil {
			p.err = err
		}
		return nil
	}
	if p.secrets == nil {
		p.secrets = map[string]*model.Secret{}
	}
	p.secrets[key] = s
	return s
}

func (p *pushLookup) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// unchanged reports whether every lookup finds what it found before.
func (p *pushLookup) unchanged(deps []dependency) bool {
	for _, d := range deps {
		var now string
		switch d.kind {
		case hostDependency:
			now = serviceIdentity(p.services[d.name])
		case secretDependency:
			now = model.SecretVersion(p.getSecret(d.namespace, d.name))
		}
		if now != d.version {
			return false
		}
	}
	return true
}

// lookup is one service's generator.Lookup: the push's, recording every lookup with
// the version of what it found, so that a cached result can tell whether the objects
// it looked at are still the same.
type lookup struct {
	push *pushLookup
	deps []dependency
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

// Service implements generator.Lookup.
func (l *lookup) Service(host string) *model.Service {
	svc := l.push.services[host]
	l.deps = append(l.deps, dependency{kind: hostDependency, name: host, version: serviceIdentity(svc)})
	return svc
}

// Secret implements generator.Lookup.
func (l *lookup) Secret(namespace, name string) *model.Secret {
	s := l.push.getSecret(namespace, name)
	l.deps = append(l.deps, dependency{kind: secretDependency, namespace: namespace, name: name, version: model.SecretVersion(s)})
	return s
}

// serviceIdentity is what a host lookup found: the service and its version.
func serviceIdentity(svc *model.Service) string {
	if svc == nil {
		return ""
	}
	return svc.Key() + "@" + svc.Version
}
