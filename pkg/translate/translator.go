package translate

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// Translator translates push after push. It keeps the config (a model.Builder),
// every service, every service's result and the translation itself, with indexes
// from each input to what depends on it, so that a push after a change (Update)
// costs in proportion to the change: it builds the services the change touches,
// generates those whose version or lookups changed (its own version, see
// model.Service.Version, and every lookup its generators made into other services
// and Secrets), decides conflicts among the services that share a filter with them,
// and changes the translation in place. Translate starts from a whole snapshot and
// reuses every result still valid; Reset forgets them.
//
// It is not safe for concurrent use; the controller's pushes run one at a time.
type Translator struct {
	context  generator.Context
	registry generator.Registry
	// cache keeps each service's results across full translations too.
	cache map[string]*cached
	// st is nil until a translation succeeds, and after one fails: Update then
	// refuses, and the next translation must be a whole one.
	st *state
}

type cached struct {
	version string
	result  *serviceResult
	// good is the last result that did not fail: its routes stay served while the
	// service fails.
	good *serviceResult
}

// state is everything an Update changes.
type state struct {
	builder  *model.Builder
	services map[string]*model.Service
	// lookup finds services by host for the generators: of the services with a host
	// (byHost), the first by key.
	lookup model.HostIndex
	byHost map[string]model.Keys
	// byPort are the services by port number.
	byPort map[uint32]model.Keys
	// dependents are the services whose results looked up a host or a Secret
	// (namespace/name).
	hostDependents, secretDependents map[string]model.Keys
	// indexed are the results the indexes below hold, by service.
	indexed map[string]*serviceResult
	// claims are the services whose results have a filter key; sameSpec those
	// whose results have a server-side filter of a fingerprint. Services that share
	// neither decide nothing for each other (see assemble).
	claims   map[string]model.Keys
	sameSpec map[uint64]model.Keys
	shared   sharing
	sharers  *shareKeys
	// out is the translation, changed in place; parts what each service put in it.
	out   *Translation
	parts map[string]*part
	// portParts are the filter and route configuration each shared port put in out.
	portParts map[uint32]portPart
	// discovery is the route server's cluster, while a port is shared.
	discovery *model.EnvoyFilter
}

// part is what one service put into the translation.
type part struct {
	filters, duplicates, failed []string
	protocols                   []model.Protocol
}

type portPart struct {
	filter, routes string
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

// Reset forgets every result: the next translation generates every service, and
// must be a whole one (Translate). The controller's periodic resync uses it, so that
// nothing a cache key might miss outlives one resync period.
func (tr *Translator) Reset() {
	tr.cache = map[string]*cached{}
	tr.st = nil
}

// Discard drops the config the Translator holds: the next translation must be a
// whole one (Translate), which still reuses the results whose inputs did not change.
func (tr *Translator) Discard() { tr.st = nil }

// NeedsSnapshot reports whether the next translation must be a whole one: there was
// none yet, the last one failed, or Reset was called.
func (tr *Translator) NeedsSnapshot() bool { return tr.st == nil }

// ErrNeedsSnapshot is Update's error when only a whole translation can go on.
var ErrNeedsSnapshot = errors.New("the translator needs a whole snapshot first")

// Translate returns the translation of snap, reusing every result whose inputs did
// not change. The Translator owns snap from then on (it keeps the snapshot's objects
// and lookups, which Update changes); the Translation is the Translator's and valid
// until its next translation. An error reading the snapshot (a lookup that failed
// for a reason other than absence) fails the whole translation: a partial view would
// drop routes or filters the user still wants.
func (tr *Translator) Translate(snap *model.Snapshot) (*Translation, error) {
	scoped := *snap
	// The context's root namespace is the one the output is written for.
	scoped.RootNamespace = tr.context.RootNamespace
	b := model.NewBuilder(&scoped)
	tr.st = newState(b, tr.context.RouteDiscovery != nil)
	dirty := model.Dirty{Services: model.Keys{}, Ports: map[uint32]bool{}}
	for _, key := range b.ServiceEntries() {
		dirty.Services.Add(key)
	}
	for _, kind := range []model.ObjectKind{model.RedisServiceKind, model.RedisDestinationKind} {
		for _, o := range b.Objects(kind) {
			dirty.Redis = append(dirty.Redis, redisRef(kind, o))
		}
	}
	t, err := tr.update(dirty, nil)
	if err != nil {
		return nil, err
	}
	for key := range tr.cache {
		if _, ok := tr.st.services[key]; !ok {
			delete(tr.cache, key)
		}
	}
	return t, nil
}

// Update changes the last translation by what changed since. It fails with
// ErrNeedsSnapshot when the Translator has no valid translation to change (see
// NeedsSnapshot), or the delta is Whole; after any other error too, the next
// translation must be a whole one.
func (tr *Translator) Update(d model.Delta) (*Translation, error) {
	if tr.st == nil || d.Whole {
		tr.st = nil
		return nil, ErrNeedsSnapshot
	}
	secrets := d.Secrets
	if d.RereadSecrets {
		secrets = slices.Collect(maps.Keys(tr.st.secretDependents))
	}
	return tr.update(tr.st.builder.Apply(d), secrets)
}

func newState(b *model.Builder, shares bool) *state {
	st := &state{
		builder:          b,
		services:         map[string]*model.Service{},
		lookup:           model.HostIndex{},
		byHost:           map[string]model.Keys{},
		byPort:           map[uint32]model.Keys{},
		hostDependents:   map[string]model.Keys{},
		secretDependents: map[string]model.Keys{},
		indexed:          map[string]*serviceResult{},
		claims:           map[string]model.Keys{},
		sameSpec:         map[uint64]model.Keys{},
		parts:            map[string]*part{},
		portParts:        map[uint32]portPart{},
		out: &Translation{
			Filters:    map[string]*model.EnvoyFilter{},
			Routes:     map[string]*model.RouteConfig{},
			Failed:     map[string]*ServiceError{},
			Skipped:    map[string][]*ServiceError{},
			Services:   map[model.Protocol]int{},
			ByKey:      map[string]*model.Service{},
			Verdicts:   map[model.ObjectRef]model.Verdict{},
			Duplicates: map[string]string{},
		},
	}
	if shares {
		st.shared, st.sharers = sharing{}, &shareKeys{}
	}
	return st
}

// update runs one translation over what dirty names; secrets are the Secrets that
// changed. On an error the state is dropped: it may be half changed.
func (tr *Translator) update(dirty model.Dirty, secrets []string) (t *Translation, err error) {
	st := tr.st
	defer func() {
		if err != nil {
			tr.st = nil
		}
	}()
	out := st.out
	out.Changed, out.ChangedServices = map[string]bool{}, map[string]bool{}
	out.VerdictsChanged, out.RoutesChanged = false, false
	p := &pushLookup{services: st.lookup, secret: st.builder.Snapshot().Secret}

	// The services the change touches, built again; and what depends on them.
	check := model.Keys{}
	rebuilt := model.Keys{}
	hosts := map[string]bool{}
	ports := dirty.Ports
	for key := range dirty.Services {
		svc, err := st.builder.Build(key)
		if err != nil {
			return nil, err
		}
		old := st.services[key]
		if old == nil && svc == nil {
			continue
		}
		rebuilt.Add(key)
		st.index(key, old, -1, tr.registry, hosts, ports)
		if svc == nil {
			delete(st.services, key)
			delete(out.ByKey, key)
		} else {
			st.services[key] = svc
			out.ByKey[key] = svc
			st.index(key, svc, +1, tr.registry, hosts, ports)
			check.Add(key)
		}
	}
	for h := range hosts {
		if st.relookup(h) {
			maps.Copy(check, st.hostDependents[h])
		}
	}
	for _, s := range secrets {
		maps.Copy(check, st.secretDependents[s])
	}
	if st.shared != nil {
		for port := range ports {
			if st.reshare(tr.registry, port) {
				maps.Copy(check, st.byPort[port])
			}
		}
	}

	// Generate what cannot be reused.
	var todo []*model.Service
	for key := range check {
		svc := st.services[key]
		if svc == nil {
			continue
		}
		c := tr.cache[key]
		if c == nil || c.version != svc.Version || c.result.sharing != st.shared.signature(svc) || !p.unchanged(c.result.deps) {
			todo = append(todo, svc)
		}
	}
	results := make([]*serviceResult, len(todo))
	generateAll(p, &tr.context, tr.registry, st.shared, todo, results)
	if err := p.failed(); err != nil {
		return nil, err
	}
	for i, svc := range todo {
		c := tr.cache[svc.Key()]
		if c == nil {
			c = &cached{}
			tr.cache[svc.Key()] = c
		}
		c.version, c.result = svc.Version, results[i]
	}

	// The services whose results changed, or that changed themselves (their age
	// decides conflicts), and every service that shares a filter with them, old or
	// new: assembled again.
	changed := rebuilt
	for _, svc := range todo {
		changed.Add(svc.Key())
	}
	seeds := newTies()
	for key := range changed {
		var now *serviceResult
		if st.services[key] == nil {
			delete(tr.cache, key)
		} else {
			now = tr.cache[key].result
		}
		old := st.indexed[key]
		seeds.add(old)
		seeds.add(now)
		if old != now {
			st.indexResult(key, old, -1)
			st.indexResult(key, now, +1)
		}
	}
	if err := tr.assemble(st.component(changed, seeds), dirty.Redis, ports, hosts); err != nil {
		return nil, err
	}
	out.Generated, out.Reused = len(todo), len(st.services)-len(todo)
	return out, nil
}

// redisRef is the reference of a Redis object of kind.
func redisRef(kind model.ObjectKind, o *model.Object) model.ObjectRef {
	k := model.KindRedisService
	if kind == model.RedisDestinationKind {
		k = model.KindRedisDestination
	}
	return model.ObjectRef{Kind: k, Namespace: o.Namespace, Name: o.Name}
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

// sortedServices returns the services of keys in the order of a translation.
func (st *state) sortedServices(keys model.Keys) []*model.Service {
	out := make([]*model.Service, 0, len(keys))
	for key := range keys {
		if svc := st.services[key]; svc != nil {
			out = append(out, svc)
		}
	}
	model.SortServices(out)
	return out
}
