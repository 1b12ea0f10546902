package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config/host"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// ObjectKind is the kind of one of a Snapshot's objects.
type ObjectKind uint8

// The kinds of a Snapshot's objects, one per list.
const (
	ServiceEntryKind ObjectKind = iota
	VirtualServiceKind
	DestinationRuleKind
	WorkloadEntryKind
	RedisServiceKind
	RedisDestinationKind
	objectKinds
)

// Change is one object of a Delta as it is now; Deleted says it is gone (Object
// then names it, and its Spec is not read).
type Change struct {
	Kind    ObjectKind
	Object  Object
	Deleted bool
}

// Delta is what changed in the config since the translation before: what a push
// after a change has to look at, instead of the whole config.
type Delta struct {
	// Objects are the changed objects of the Snapshot's lists.
	Objects []Change
	// Services are the keys of the services (namespace/name of the ServiceEntry;
	// synthetic-<name> for a Kubernetes Service) whose state beyond istiod's changed:
	// the Kubernetes Service, its EndpointSlices, the ServiceEntry's annotations,
	// labels or status as the apiserver has them (Snapshot.KubeService,
	// ServiceEntryState).
	Services []string
	// Secrets are the namespace/name of the Secrets that changed.
	Secrets []string
	// RereadSecrets says to read every Secret a generator read again: they are
	// polled, not watched.
	RereadSecrets bool
	// Whole says that what changed cannot be told object by object (the mesh's
	// defaults): only a translation of the whole config will do.
	Whole bool
}

// Builder builds services from a snapshot that it keeps up to date change by change
// (Apply), with every index a service is built from: after one change it rebuilds
// the services that change can touch, not every service. BuildServices is a Builder
// used once.
type Builder struct {
	// snap has the lookups and the settings; its lists are the Builder's objects.
	snap    *Snapshot
	objects [objectKinds]map[string]*Object
	vs      *hostIndex[*networking.VirtualService]
	dr      *hostIndex[*networking.DestinationRule]
	rs      *hostIndex[*redisspec.RedisServiceSpec]
	rd      *hostIndex[*redisspec.RedisDestinationSpec]
	// wildcard counts, per port number, the ports of ServiceEntries without an
	// address of their own that declare it (a port is the wildcard listener's only
	// when the count is one; see Build); unaddressed are those ServiceEntries by port
	// number, whose wildcard listener a change can give or take.
	wildcard    map[uint32]int
	unaddressed map[uint32]Keys
	// byHost are the ServiceEntries by host as written, byNamespace by namespace;
	// workloads the WorkloadEntries by namespace.
	byHost      map[string]Keys
	byNamespace map[string]Keys
	workloads   map[string]Keys
	// protocols count the ports of every ServiceEntry by number and protocol.
	protocols map[uint32]map[Protocol]int
}

// Dirty is what a Delta touched (see Builder.Apply).
type Dirty struct {
	// Services are the keys of the ServiceEntries to build again: those that changed
	// and those whose related objects did. A key may name one that is gone.
	Services Keys
	// Ports are the port numbers of the ServiceEntries that changed, before and after.
	Ports map[uint32]bool
	// Redis are the RedisServices and RedisDestinations that changed.
	Redis []ObjectRef
}

// Keys is a set of keys (namespace/name).
type Keys map[string]struct{}

// Add adds k.
func (s Keys) Add(k string) { s[k] = struct{}{} }

// NewBuilder returns a Builder of the snapshot's objects, with its lookups and
// settings. The Builder owns the snapshot from then on.
func NewBuilder(snap *Snapshot) *Builder {
	b := &Builder{
		snap:        snap,
		wildcard:    map[uint32]int{},
		unaddressed: map[uint32]Keys{},
		byHost:      map[string]Keys{},
		byNamespace: map[string]Keys{},
		workloads:   map[string]Keys{},
		protocols:   map[uint32]map[Protocol]int{},
	}
	defaults := snap.ExportDefaults
	b.vs = newHostIndex(snap.DomainSuffix, func(c Object, vs *networking.VirtualService) []string {
		return ExportNamespaces(vs.GetExportTo(), defaults.VirtualService, c.Namespace)
	}, false)
	b.dr = newHostIndex(snap.DomainSuffix, func(c Object, dr *networking.DestinationRule) []string {
		return destinationRuleExport(dr, defaults.DestinationRule, c.Namespace)
	}, false)
	b.rs = newHostIndex[*redisspec.RedisServiceSpec](snap.DomainSuffix, nil, true)
	b.rd = newHostIndex[*redisspec.RedisDestinationSpec](snap.DomainSuffix, nil, true)
	for k := range b.objects {
		b.objects[k] = map[string]*Object{}
	}
	for kind, list := range b.lists() {
		for _, o := range *list {
			b.set(ObjectKind(kind), &o)
		}
		*list = nil
	}
	return b
}

// lists are the snapshot's lists by kind.
func (b *Builder) lists() [objectKinds]*[]Object {
	s := b.snap
	return [objectKinds]*[]Object{&s.ServiceEntries, &s.VirtualServices, &s.DestinationRules, &s.WorkloadEntries, &s.RedisServices, &s.RedisDestinations}
}

// Snapshot returns the lookups and settings the Builder builds with.
func (b *Builder) Snapshot() *Snapshot { return b.snap }

// Objects returns the objects of a kind, by key. They must not be changed.
func (b *Builder) Objects(kind ObjectKind) map[string]*Object { return b.objects[kind] }

// ServiceEntries returns the keys of every ServiceEntry, sorted.
func (b *Builder) ServiceEntries() []string {
	return slices.Sorted(maps.Keys(b.objects[ServiceEntryKind]))
}

// Apply takes in the changes and says what they touched.
func (b *Builder) Apply(d Delta) Dirty {
	dirty := Dirty{Services: Keys{}, Ports: map[uint32]bool{}}
	for _, c := range d.Objects {
		key := c.Object.Namespace + "/" + c.Object.Name
		switch c.Kind {
		case RedisServiceKind:
			dirty.Redis = append(dirty.Redis, ObjectRef{Kind: KindRedisService, Namespace: c.Object.Namespace, Name: c.Object.Name})
		case RedisDestinationKind:
			dirty.Redis = append(dirty.Redis, ObjectRef{Kind: KindRedisDestination, Namespace: c.Object.Namespace, Name: c.Object.Name})
		}
		if old := b.objects[c.Kind][key]; old != nil {
			b.touched(c.Kind, old, &dirty)
			b.unset(c.Kind, key, old)
		}
		if !c.Deleted {
			obj := c.Object
			b.set(c.Kind, &obj)
			b.touched(c.Kind, &obj, &dirty)
		}
	}
	for _, k := range d.Services {
		dirty.Services.Add(k)
	}
	return dirty
}

// PortProtocol returns the protocol that every ServiceEntry's port of number n
// declares; false when none does, or they differ.
func (b *Builder) PortProtocol(n uint32) (Protocol, bool) {
	if len(b.protocols[n]) != 1 {
		return "", false
	}
	for p := range b.protocols[n] {
		return p, true
	}
	return "", false
}

// touched adds to dirty what an object of kind can change.
func (b *Builder) touched(kind ObjectKind, o *Object, dirty *Dirty) {
	switch kind {
	case ServiceEntryKind:
		dirty.Services.Add(o.Namespace + "/" + o.Name)
		se, ok := o.Spec.(*networking.ServiceEntry)
		if !ok {
			return
		}
		unaddressed := len(addresses(se.GetAddresses())) == 0
		for _, p := range se.GetPorts() {
			dirty.Ports[p.GetNumber()] = true
			// Whether a port's wildcard listener is one service's depends on the others.
			if unaddressed {
				maps.Copy(dirty.Services, b.unaddressed[p.GetNumber()])
			}
		}
	case WorkloadEntryKind:
		maps.Copy(dirty.Services, b.byNamespace[o.Namespace])
	default:
		for _, h := range HostsOf(*o, b.snap.DomainSuffix) {
			b.servicesOf(host.Name(h), dirty.Services)
		}
	}
}

// servicesOf adds the ServiceEntries a host of a routing object binds to: those with
// the host, or for a wildcard every one with a host it matches (a walk over every
// host: rare).
func (b *Builder) servicesOf(h host.Name, dirty Keys) {
	if !h.IsWildCarded() {
		maps.Copy(dirty, b.byHost[string(h)])
		return
	}
	for sh, keys := range b.byHost {
		if h.Matches(host.Name(sh)) {
			maps.Copy(dirty, keys)
		}
	}
}

func (b *Builder) set(kind ObjectKind, o *Object) {
	key := o.Namespace + "/" + o.Name
	b.objects[kind][key] = o
	switch kind {
	case ServiceEntryKind:
		b.indexServiceEntry(key, o, +1)
	case VirtualServiceKind:
		b.vs.add(key, *o)
	case DestinationRuleKind:
		b.dr.add(key, *o)
	case RedisServiceKind:
		b.rs.add(key, *o)
	case RedisDestinationKind:
		b.rd.add(key, *o)
	case WorkloadEntryKind:
		addTo(b.workloads, o.Namespace, key)
	}
}

func (b *Builder) unset(kind ObjectKind, key string, o *Object) {
	delete(b.objects[kind], key)
	switch kind {
	case ServiceEntryKind:
		b.indexServiceEntry(key, o, -1)
	case VirtualServiceKind:
		b.vs.remove(key)
	case DestinationRuleKind:
		b.dr.remove(key)
	case RedisServiceKind:
		b.rs.remove(key)
	case RedisDestinationKind:
		b.rd.remove(key)
	case WorkloadEntryKind:
		removeFrom(b.workloads, o.Namespace, key)
	}
}

func (b *Builder) indexServiceEntry(key string, o *Object, delta int) {
	indexKey(b.byNamespace, o.Namespace, key, delta)
	se, ok := o.Spec.(*networking.ServiceEntry)
	if !ok {
		return
	}
	for _, h := range se.GetHosts() {
		indexKey(b.byHost, h, key, delta)
	}
	for _, p := range se.GetPorts() {
		byProto := b.protocols[p.GetNumber()]
		if byProto == nil {
			byProto = map[Protocol]int{}
			b.protocols[p.GetNumber()] = byProto
		}
		proto := ParsePortName(p.GetName())
		if byProto[proto] += delta; byProto[proto] == 0 {
			delete(byProto, proto)
		}
		if len(byProto) == 0 {
			delete(b.protocols, p.GetNumber())
		}
	}
	if len(addresses(se.GetAddresses())) > 0 {
		return
	}
	for _, p := range se.GetPorts() {
		b.wildcard[p.GetNumber()] += delta
		if b.wildcard[p.GetNumber()] == 0 {
			delete(b.wildcard, p.GetNumber())
		}
		indexKey(b.unaddressed, p.GetNumber(), key, delta)
	}
}

// indexKey adds key to m[k] (delta > 0) or removes it.
func indexKey[K comparable](m map[K]Keys, k K, key string, delta int) {
	if delta > 0 {
		addTo(m, k, key)
	} else {
		removeFrom(m, k, key)
	}
}

func addTo[K comparable](m map[K]Keys, k K, key string) {
	s := m[k]
	if s == nil {
		s = Keys{}
		m[k] = s
	}
	s.Add(key)
}

func removeFrom[K comparable](m map[K]Keys, k K, key string) {
	if s := m[k]; s != nil {
		delete(s, key)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// BuildServices returns a Service for every ServiceEntry with at least one port of a
// supported protocol, ordered by key. Hosts of VirtualServices and DestinationRules
// are resolved once into an index, so the cost is linear in the config size. A
// failed lookup of the snapshot is an error naming the object. snap's lists are
// left as they were.
func BuildServices(snap *Snapshot) ([]*Service, error) {
	own := *snap
	b := NewBuilder(&own)
	var out []*Service
	for _, key := range b.ServiceEntries() {
		svc, err := b.Build(key)
		if err != nil {
			return nil, err
		}
		if svc != nil {
			out = append(out, svc)
		}
	}
	SortServices(out)
	return out, nil
}

// SortServices orders services by namespace, then name: the order of a translation.
func SortServices(services []*Service) { slices.SortFunc(services, CompareServices) }

// CompareServices orders services by namespace, then name.
func CompareServices(a, b *Service) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// Build returns the service of the ServiceEntry key; nil when there is none, or it
// has no port of a supported protocol.
func (b *Builder) Build(key string) (*Service, error) {
	c := b.objects[ServiceEntryKind][key]
	if c == nil {
		return nil, nil
	}
	se, ok := c.Spec.(*networking.ServiceEntry)
	if !ok || se == nil {
		return nil, nil
	}
	snap := b.snap
	var kube *KubeService
	name, synthetic := syntheticName(c, se, snap.DomainSuffix)
	if synthetic && snap.KubeService != nil {
		var err error
		if kube, err = snap.KubeService(c.Namespace, name); err != nil {
			return nil, fmt.Errorf("reading Service %s/%s: %w", c.Namespace, name, err)
		}
	}
	ports := supportedPorts(se, kube)
	if len(ports) == 0 {
		return nil, nil
	}
	svc := &Service{
		Name:        c.Name,
		Namespace:   c.Namespace,
		Annotations: c.Annotations,
		Hosts:       sortedUnique(se.GetHosts()),
		Addresses:   addresses(se.GetAddresses()),
		Ports:       ports,
		Created:     c.Created,
		Synthetic:   synthetic,
	}
	if kube != nil && len(svc.Addresses) == 0 {
		svc.Addresses = kube.Endpoints
	}
	switch {
	case kube != nil:
		svc.Annotations = kube.Annotations
	case snap.ServiceEntryState != nil:
		state, err := snap.ServiceEntryState(c.Namespace, c.Name)
		if err != nil {
			return nil, fmt.Errorf("reading ServiceEntry %s/%s from the apiserver: %w", c.Namespace, c.Name, err)
		}
		if state != nil {
			svc.Annotations = state.Annotations
			svc.Allocated = allocatedAddresses(se, state, svc.Hosts)
		}
	}
	if sel := se.GetWorkloadSelector().GetLabels(); len(sel) > 0 {
		svc.WorkloadSelector = sel
	} else if !synthetic {
		svc.WorkloadSelector = annotatedSelector(svc.Annotations)
	}
	if len(svc.Addresses) == 0 && !synthetic && dnsResolved(se) {
		for _, p := range svc.Ports {
			p.Wildcard = b.wildcard[p.Number] == 1
		}
	}
	workloads := workloadPorts(svc, b.workloadsOf(c.Namespace))
	svc.ExportTo = ExportNamespaces(se.GetExportTo(), snap.ExportDefaults.ServiceEntry, c.Namespace)
	r := routing{
		vss:           virtualServicePrecedence(b.vs.lookup(svc.Hosts), svc.Hosts, snap.DomainSuffix),
		drs:           b.dr.lookup(svc.Hosts),
		svcNamespace:  svc.Namespace,
		rootNamespace: snap.RootNamespace,
	}
	svc.VirtualServices, svc.DestinationRules = r.virtualServices(""), r.destinationRules("")
	svc.Views = r.views(svc)
	svc.RedisServices = inScope(b.rs.lookup(svc.Hosts), svc.Namespace, snap.RootNamespace)
	svc.RedisDestinations = inScope(b.rd.lookup(svc.Hosts), svc.Namespace, snap.RootNamespace)
	svc.Version = serviceVersion(c, kube, svc, workloads)
	return svc, nil
}

// RedisObjectsOf returns the RedisServices and RedisDestinations that may bind to a
// service with one of hosts (without the scope of their namespace).
func (b *Builder) RedisObjectsOf(hosts []string) []ObjectRef {
	var out []ObjectRef
	for _, c := range b.rs.lookup(hosts) {
		out = append(out, ObjectRef{Kind: KindRedisService, Namespace: c.Namespace, Name: c.Name})
	}
	for _, c := range b.rd.lookup(hosts) {
		out = append(out, ObjectRef{Kind: KindRedisDestination, Namespace: c.Namespace, Name: c.Name})
	}
	return out
}

// workloadsOf returns the WorkloadEntries of a namespace, by key.
func (b *Builder) workloadsOf(ns string) []*Object {
	keys := b.workloads[ns]
	if len(keys) == 0 {
		return nil
	}
	out := make([]*Object, 0, len(keys))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		out = append(out, b.objects[WorkloadEntryKind][k])
	}
	return out
}

// hostIndex finds the objects bound to a host, resolving short names the way Istio
// does. It is kept up to date object by object.
type hostIndex[T any] struct {
	domainSuffix string
	export       func(Object, T) []string
	// bindable leaves out objects with a wildcard host (see Bindable).
	bindable bool
	exact    map[string]map[string]*Config[T]
	// wildcards are the objects with a wildcard host, by key.
	wildcards map[string][]wildcardEntry[T]
	// hosts are each object's hosts, by key, for its removal.
	hosts map[string][]string
}

type wildcardEntry[T any] struct {
	host host.Name
	cfg  *Config[T]
}

// newHostIndex returns an empty index of the objects of kind T. export resolves an
// object's exportTo (see Config.ExportTo); nil for kinds without one.
func newHostIndex[T any](domainSuffix string, export func(Object, T) []string, bindable bool) *hostIndex[T] {
	return &hostIndex[T]{domainSuffix: domainSuffix, export: export, bindable: bindable,
		exact: map[string]map[string]*Config[T]{}, wildcards: map[string][]wildcardEntry[T]{}, hosts: map[string][]string{}}
}

func (idx *hostIndex[T]) add(key string, c Object) {
	spec, ok := c.Spec.(T)
	if !ok || (idx.bindable && len(Bindable([]Object{c}, idx.domainSuffix)) == 0) {
		return
	}
	entry := &Config[T]{Name: c.Name, Namespace: c.Namespace, Spec: spec, Version: ConfigVersion(c), Created: c.Created}
	if idx.export != nil {
		entry.ExportTo = idx.export(c, spec)
	}
	hosts := HostsOf(c, idx.domainSuffix)
	idx.hosts[key] = hosts
	for _, h := range hosts {
		fqdn := host.Name(h)
		if fqdn.IsWildCarded() {
			idx.wildcards[key] = append(idx.wildcards[key], wildcardEntry[T]{host: fqdn, cfg: entry})
			continue
		}
		byKey := idx.exact[h]
		if byKey == nil {
			byKey = map[string]*Config[T]{}
			idx.exact[h] = byKey
		}
		byKey[key] = entry
	}
}

func (idx *hostIndex[T]) remove(key string) {
	for _, h := range idx.hosts[key] {
		if byKey := idx.exact[h]; byKey != nil {
			delete(byKey, key)
			if len(byKey) == 0 {
				delete(idx.exact, h)
			}
		}
	}
	delete(idx.hosts, key)
	delete(idx.wildcards, key)
}

func (idx *hostIndex[T]) lookup(hosts []string) []*Config[T] {
	var out []*Config[T]
	for _, h := range hosts {
		for _, c := range idx.exact[h] {
			out = append(out, c)
		}
		for _, entries := range idx.wildcards {
			for _, w := range entries {
				if w.host.Matches(host.Name(h)) {
					out = append(out, w.cfg)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b *Config[T]) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return slices.CompactFunc(out, func(a, b *Config[T]) bool { return a == b })
}
