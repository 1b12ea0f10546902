// Package feedback closes the loop through the sidecars: it ties what proxies
// rejected (model.ProxySync, istiod's view of each proxy's last listener and
// cluster update) to the EnvoyFilters that shaped the rejected resources and to
// the services behind them (Attribute), and decides what to write instead while
// proxies reject a service's filters (Guard). It is pure: it reads its inputs and
// the time it is given.
//
// Attribution is by names, as Envoy reports a rejection: its error detail names
// each rejected listener ("Error adding/updating listener(s) <name>: <why>") or
// cluster, and the why names the filter or config type at fault. An EnvoyFilter is
// blamed for a proxy's listener rejection only when the detail names a listener it
// patches (by name, or by port for a shared port's filter) and one of the filters it
// puts there (by name or config type); for a cluster rejection, when the detail
// names a cluster it patches. Only filters that reach the proxy count: those of the
// root namespace and of the proxy's own. A rejection that blames none of our
// filters is counted apart and blamed on no service: another EnvoyFilter, a
// Sidecar resource or a proxy bug caused it.
package feedback

import (
	"slices"
	"strconv"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
)

// OwnerKind says what an Owner names.
type OwnerKind string

// Kinds of Owner.
const (
	// OwnerService is a service (namespace/name, as model.Service.Key).
	OwnerService OwnerKind = "service"
	// OwnerSharedPort is a shared port's filter (protocol/port, model.SharedPortKey).
	OwnerSharedPort OwnerKind = "port"
	// OwnerFilter is any other EnvoyFilter of ours, by key (the route server's
	// cluster, for one).
	OwnerFilter OwnerKind = "filter"
)

// Owner is what an EnvoyFilter of ours was generated for: the unit that is
// reported, and contained, as one.
type Owner struct {
	Kind OwnerKind
	Key  string
}

func (o Owner) String() string { return string(o.Kind) + " " + o.Key }

// OwnerOf returns the owner of one of our EnvoyFilters, from its annotations.
func OwnerOf(ef *model.EnvoyFilter) Owner {
	if s := ef.Annotations[model.ServiceAnnotation]; s != "" {
		return Owner{Kind: OwnerService, Key: s}
	}
	if p := ef.Annotations[model.SharedPortAnnotation]; p != "" {
		return Owner{Kind: OwnerSharedPort, Key: p}
	}
	return Owner{Kind: OwnerFilter, Key: ef.Key()}
}

// target is one EnvoyFilter as attribution sees it.
type target struct {
	key   string
	owner Owner
	// namespace is the EnvoyFilter's: the root namespace's reach every proxy.
	namespace string
	// names are what a rejection caused by its listener patches names: the
	// filters' names and their config types (DubboProxy, ...).
	names []string
	// protocols of the filters it puts on listeners, for metrics.
	protocols []model.Protocol
}

// Index finds our EnvoyFilters by the listeners and clusters they patch. Build it
// from the filters that were written (after containment), once per push.
type Index struct {
	rootNamespace string
	byListener    map[string][]*target
	byPort        map[uint32][]*target
	byCluster     map[string][]*target
}

// NewIndex indexes filters (by key). protocols maps a network filter's name to the
// protocol it serves (dubbo_proxy to dubbo, ...).
func NewIndex(filters map[string]*model.EnvoyFilter, rootNamespace string, protocols map[string]model.Protocol) *Index {
	idx := &Index{
		rootNamespace: rootNamespace,
		byListener:    map[string][]*target{},
		byPort:        map[uint32][]*target{},
		byCluster:     map[string][]*target{},
	}
	for key, ef := range filters {
		t := &target{key: key, owner: OwnerOf(ef), namespace: ef.Namespace}
		var listeners []string
		var ports []uint32
		var clusters []string
		for _, p := range ef.SpecProto().GetConfigPatches() {
			switch p.GetApplyTo() {
			case networking.EnvoyFilter_NETWORK_FILTER:
				l := p.GetMatch().GetListener()
				switch {
				case l.GetName() != "":
					listeners = append(listeners, l.GetName())
				case l.GetPortNumber() != 0:
					ports = append(ports, l.GetPortNumber())
				}
				fields := p.GetPatch().GetValue().GetFields()
				if name := fields["name"].GetStringValue(); name != "" {
					t.names = append(t.names, name)
					if proto, ok := protocols[name]; ok && !slices.Contains(t.protocols, proto) {
						t.protocols = append(t.protocols, proto)
					}
				}
				typ := fields["typedConfig"].GetStructValue().GetFields()["@type"].GetStringValue()
				if i := strings.LastIndexByte(typ, '.'); i >= 0 && i < len(typ)-1 {
					t.names = append(t.names, typ[i+1:])
				}
			case networking.EnvoyFilter_CLUSTER:
				if name := p.GetMatch().GetCluster().GetName(); name != "" {
					clusters = append(clusters, name)
				}
				if name := p.GetPatch().GetValue().GetFields()["name"].GetStringValue(); name != "" {
					clusters = append(clusters, name)
				}
			}
		}
		for _, l := range uniq(listeners) {
			idx.byListener[l] = append(idx.byListener[l], t)
		}
		for _, p := range uniq(ports) {
			idx.byPort[p] = append(idx.byPort[p], t)
		}
		for _, c := range uniq(clusters) {
			idx.byCluster[c] = append(idx.byCluster[c], t)
		}
	}
	return idx
}

func uniq[T int | uint32 | string](s []T) []T {
	slices.Sort(s)
	return slices.Compact(s)
}

// Report is what a ProxySync says about our filters.
type Report struct {
	// Proxies, InSync and Rejecting count the proxies istiod reported: all, those
	// that accepted their last updates, those that rejected one.
	Proxies, InSync, Rejecting int
	// Rejections are the rejections blamed on our filters, by owner.
	Rejections map[Owner]*Rejection
	// ByProtocol counts the proxies rejecting filters of ours, by the filters'
	// protocol (a proxy may count under several).
	ByProtocol map[model.Protocol]int
	// Unattributed counts the rejecting proxies none of whose rejections is ours;
	// UnattributedExample is one of them.
	Unattributed        int
	UnattributedExample *model.ProxyStatus
}

// Rejection is what proxies rejected of one owner's filters.
type Rejection struct {
	Owner Owner
	// Filters are the keys of the EnvoyFilters blamed, sorted.
	Filters []string
	// Protocols are those of the filters blamed, sorted.
	Protocols []model.Protocol
	// Proxies counts the proxies rejecting; Example is one of them, with Detail the
	// first line of its error that blames the owner.
	Proxies int
	Example string
	Detail  string
	// Sent is the latest time istiod sent one of the rejected updates.
	Sent time.Time
}

// Attribute ties the rejections of sync to the filters of idx.
func Attribute(sync *model.ProxySync, idx *Index) *Report {
	r := &Report{
		Proxies:    sync.Proxies,
		InSync:     sync.InSync,
		Rejecting:  len(sync.Rejecting) + sync.Dropped,
		Rejections: map[Owner]*Rejection{},
		ByProtocol: map[model.Protocol]int{},
	}
	for _, p := range sync.Rejecting {
		blamed := map[Owner]*blame{}
		if p.Listeners != "" {
			idx.blameListeners(p, blamed)
		}
		if p.Clusters != "" {
			idx.blameClusters(p, blamed)
		}
		if len(blamed) == 0 {
			r.Unattributed++
			if r.UnattributedExample == nil {
				r.UnattributedExample = p
			}
			continue
		}
		var protos []model.Protocol
		for _, b := range blamed {
			for _, t := range b.targets {
				protos = append(protos, t.protocols...)
			}
		}
		slices.Sort(protos)
		for _, proto := range slices.Compact(protos) {
			r.ByProtocol[proto]++
		}
		for owner, b := range blamed {
			rej := r.Rejections[owner]
			if rej == nil {
				rej = &Rejection{Owner: owner, Example: p.ID, Detail: b.line}
				r.Rejections[owner] = rej
			}
			rej.Proxies++
			for _, t := range b.targets {
				if !slices.Contains(rej.Filters, t.key) {
					rej.Filters = append(rej.Filters, t.key)
				}
				for _, proto := range t.protocols {
					if !slices.Contains(rej.Protocols, proto) {
						rej.Protocols = append(rej.Protocols, proto)
					}
				}
			}
			if b.sent.After(rej.Sent) {
				rej.Sent = b.sent
			}
		}
	}
	for _, rej := range r.Rejections {
		slices.Sort(rej.Filters)
		slices.Sort(rej.Protocols)
	}
	return r
}

// blame is what one proxy's rejection blames on one owner.
type blame struct {
	targets []*target
	// line is the first line of the error that blames it.
	line string
	sent time.Time
}

func (b *blame) add(t *target, line string, sent time.Time) {
	if !slices.Contains(b.targets, t) {
		b.targets = append(b.targets, t)
	}
	if b.line == "" {
		b.line = line
	}
	if sent.After(b.sent) {
		b.sent = sent
	}
}

// reaches reports whether a filter of t's namespace applies to a proxy of ns.
func (idx *Index) reaches(t *target, ns string) bool {
	return t.namespace == idx.rootNamespace || t.namespace == ns
}

func (idx *Index) blameListeners(p *model.ProxyStatus, blamed map[Owner]*blame) {
	for _, line := range lines(p.Listeners) {
		for _, name := range tokens(line) {
			candidates := idx.byListener[name]
			if port, ok := listenerPort(name); ok {
				candidates = append(slices.Clip(candidates), idx.byPort[port]...)
			}
			for _, t := range candidates {
				if !idx.reaches(t, p.Namespace) || !slices.ContainsFunc(t.names, func(n string) bool { return strings.Contains(line, n) }) {
					continue
				}
				b := blamed[t.owner]
				if b == nil {
					b = &blame{}
					blamed[t.owner] = b
				}
				b.add(t, line, p.ListenersSent)
			}
		}
	}
}

func (idx *Index) blameClusters(p *model.ProxyStatus, blamed map[Owner]*blame) {
	for _, line := range lines(p.Clusters) {
		for _, name := range tokens(line) {
			for _, t := range idx.byCluster[name] {
				if !idx.reaches(t, p.Namespace) {
					continue
				}
				b := blamed[t.owner]
				if b == nil {
					b = &blame{}
					blamed[t.owner] = b
				}
				b.add(t, line, p.ClustersSent)
			}
		}
	}
}

// lines splits an error detail into its non-empty lines: Envoy gives each rejected
// resource a line of its own.
func lines(detail string) []string {
	var out []string
	for _, l := range strings.Split(detail, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// tokens splits a line into the words that may be listener or cluster names, the
// punctuation Envoy puts around them taken off.
func tokens(line string) []string {
	fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == ',' || r == '\'' || r == '"' })
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if f = strings.TrimRight(f, ":;."); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// listenerPort returns the port of an Istio listener name <address>_<port>.
func listenerPort(name string) (uint32, bool) {
	i := strings.LastIndexByte(name, '_')
	if i <= 0 {
		return 0, false
	}
	port, err := strconv.ParseUint(name[i+1:], 10, 32)
	return uint32(port), err == nil && port > 0
}
