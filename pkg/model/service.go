package model

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config/host"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// SyntheticPrefix starts the name istiod gives the ServiceEntry it derives from a
// Kubernetes Service.
const SyntheticPrefix = "synthetic-"

// Service is one ServiceEntry, or one Kubernetes Service as istiod shows it, with the
// Istio config that routes to it already resolved. Everything is sorted. Generators
// must treat it as read-only.
type Service struct {
	Name        string
	Namespace   string
	Annotations map[string]string
	// Hosts are the fully qualified hosts of the service.
	Hosts []string
	// Addresses are the VIPs; Istio builds one outbound listener <address>_<port> each.
	Addresses []string
	// Ports are the ports with a supported protocol, by number.
	Ports []*Port
	// WorkloadSelector selects the workloads that serve the service; nil when the
	// service has no workloads in the mesh (then there is no inbound side to patch).
	WorkloadSelector map[string]string
	// ExportTo are the namespaces whose sidecars see the service (its exportTo, "."
	// resolved), sorted; nil when every namespace's do.
	ExportTo []string
	// VirtualServices bound to any host of the service and visible to every namespace,
	// in the order Istio's sidecars prefer them (see virtualServicePrecedence): the
	// first is the one in effect.
	VirtualServices []*Config[*networking.VirtualService]
	// DestinationRules for any host of the service that Istio's sidecars use for it,
	// exported to every namespace: those of the service's namespace, or, when it has
	// none, those of the root namespace; by namespace and name.
	DestinationRules []*Config[*networking.DestinationRule]
	// RedisServices and RedisDestinations for any host of the service, by namespace
	// and name.
	RedisServices     []*Config[*redisspec.RedisServiceSpec]
	RedisDestinations []*Config[*redisspec.RedisDestinationSpec]
	// Synthetic says the service is a Kubernetes Service, as istiod shows it (the
	// ServiceEntry synthetic-<name>), not a ServiceEntry.
	Synthetic bool
	// Created is the ServiceEntry's (or Kubernetes Service's) creation time: of two
	// services that claim the same thing, the older keeps it, as Istio decides.
	Created time.Time
	// Version fingerprints everything above: the ServiceEntry's content, the
	// Kubernetes Service's resource version, and the identity and version of each
	// related object. Equal versions build equal filters (see translate.Translator).
	Version string
}

// Port is a service port with a supported protocol.
type Port struct {
	Number   uint32
	Name     string
	Protocol Protocol
	// TargetPort is the port the workloads listen on: the number of the inbound
	// filter chain. Zero when it is unknown (a named Kubernetes targetPort).
	TargetPort uint32
}

// Config is a named Istio object with its typed spec.
type Config[T any] struct {
	Name      string
	Namespace string
	Spec      T
	// Version changes whenever the object does: its resource version, or a hash of
	// its content when it has none.
	Version string
	// Created is the object's creation time; zero when unknown.
	Created time.Time
}

// Key is namespace/name: the identity of the service across pushes.
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Kind is what the service came from, for messages to the user.
func (s *Service) Kind() string {
	if s.Synthetic {
		return "Service"
	}
	return "ServiceEntry"
}

// ObjectName is the name of the user's object the service came from.
func (s *Service) ObjectName() string {
	if s.Synthetic {
		return strings.TrimPrefix(s.Name, SyntheticPrefix)
	}
	return s.Name
}

// syntheticName returns the Kubernetes Service a ServiceEntry of the snapshot stands
// for, when it is the one istiod derives from it: named synthetic-<name>, with the
// one host <name>.<namespace>.svc.<domainSuffix>. A ServiceEntry that is only named
// so borrows nothing from the Service.
func syntheticName(c *Object, se *networking.ServiceEntry, domainSuffix string) (string, bool) {
	name, ok := strings.CutPrefix(c.Name, SyntheticPrefix)
	hosts := se.GetHosts()
	return name, ok && len(hosts) == 1 && hosts[0] == name+"."+c.Namespace+".svc."+domainSuffix
}

// Object is one object of a snapshot: its identity, the metadata a translation reads
// and its typed spec (the istio.io/api message of a ServiceEntry, VirtualService or
// DestinationRule; the whole object of a RedisService or RedisDestination).
type Object struct {
	Name, Namespace string
	Annotations     map[string]string
	// ResourceVersion is empty for objects read from files.
	ResourceVersion string
	// Generation is the object's metadata.generation, where the object has one (our
	// Redis objects): verdicts name the generation they were made from.
	Generation int64
	// Created is the object's creation time; zero when unknown.
	Created time.Time
	Spec    any
}

// Snapshot is the Istio config a translation starts from.
type Snapshot struct {
	ServiceEntries   []Object
	VirtualServices  []Object
	DestinationRules []Object
	// RedisServices and RedisDestinations have their redisspec specs as Spec.
	RedisServices     []Object
	RedisDestinations []Object
	// The lookups below return nil (or false) with no error when the object does not
	// exist; an error is a failed read, and fails the translation: a push from a
	// partial view would drop what the user still wants.

	// Secret returns a Secret from the controller's cache.
	Secret func(namespace, name string) (*Secret, error)
	// KubeService returns the Kubernetes Service behind a synthetic ServiceEntry.
	// istiod's synthetic entries carry neither annotations nor target ports.
	KubeService func(namespace, name string) (*KubeService, error)
	// ServiceEntryAnnotations returns a ServiceEntry's annotations as the apiserver
	// has them, and whether it has the object. istiod pushes no change of a
	// ServiceEntry's annotations alone, so its copy can be stale.
	ServiceEntryAnnotations func(namespace, name string) (map[string]string, bool, error)
	// DomainSuffix completes short hosts: name -> name.<namespace>.svc.<suffix>.
	DomainSuffix string
	// RootNamespace is Istio's root namespace: a RedisService or RedisDestination there
	// configures services of every namespace, one elsewhere only those of its own, as
	// Istio scopes its own root-namespace config.
	RootNamespace string
}

// BuildServices returns a Service for every ServiceEntry with at least one port of a
// supported protocol, ordered by key. Hosts of VirtualServices and DestinationRules
// are resolved once into an index, so the cost is linear in the config size. A
// failed lookup of the snapshot is an error naming the object.
func BuildServices(snap *Snapshot) ([]*Service, error) {
	vsIndex := newHostIndex[*networking.VirtualService](meshWide(snap.VirtualServices), snap.DomainSuffix)
	drIndex := newHostIndex[*networking.DestinationRule](snap.DestinationRules, snap.DomainSuffix)
	rsIndex := newHostIndex[*redisspec.RedisServiceSpec](Bindable(snap.RedisServices, snap.DomainSuffix), snap.DomainSuffix)
	rdIndex := newHostIndex[*redisspec.RedisDestinationSpec](Bindable(snap.RedisDestinations, snap.DomainSuffix), snap.DomainSuffix)

	var out []*Service
	for i := range snap.ServiceEntries {
		c := &snap.ServiceEntries[i]
		se, ok := c.Spec.(*networking.ServiceEntry)
		if !ok || se == nil {
			continue
		}
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
			continue
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
		switch {
		case kube != nil:
			svc.Annotations = kube.Annotations
		case snap.ServiceEntryAnnotations != nil:
			a, ok, err := snap.ServiceEntryAnnotations(c.Namespace, c.Name)
			if err != nil {
				return nil, fmt.Errorf("reading the annotations of ServiceEntry %s/%s: %w", c.Namespace, c.Name, err)
			}
			if ok {
				svc.Annotations = a
			}
		}
		if sel := se.GetWorkloadSelector().GetLabels(); len(sel) > 0 {
			svc.WorkloadSelector = sel
		}
		svc.ExportTo = exportNamespaces(se.GetExportTo(), c.Namespace)
		svc.VirtualServices = virtualServicePrecedence(vsIndex.lookup(svc.Hosts), svc.Hosts, snap.DomainSuffix)
		svc.DestinationRules = destinationRules(drIndex.lookup(svc.Hosts), svc.Namespace, snap.RootNamespace)
		svc.RedisServices = inScope(rsIndex.lookup(svc.Hosts), svc.Namespace, snap.RootNamespace)
		svc.RedisDestinations = inScope(rdIndex.lookup(svc.Hosts), svc.Namespace, snap.RootNamespace)
		svc.Version = serviceVersion(c, kube, svc)
		out = append(out, svc)
	}
	// By key, without building the keys: a push sorts every service.
	slices.SortFunc(out, func(a, b *Service) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// HasSupportedPort reports whether a ServiceEntry declares a port of a supported protocol.
func HasSupportedPort(se *networking.ServiceEntry) bool {
	for _, p := range se.GetPorts() {
		if ParsePortName(p.GetName()).Supported() {
			return true
		}
	}
	return false
}

func supportedPorts(se *networking.ServiceEntry, kube *KubeService) []*Port {
	var out []*Port
	for _, p := range se.GetPorts() {
		proto := ParsePortName(p.GetName())
		if !proto.Supported() {
			continue
		}
		target := p.GetTargetPort()
		if target == 0 {
			target = p.GetNumber()
		}
		if kube != nil {
			target = kube.TargetPort(p.GetNumber())
		}
		out = append(out, &Port{Number: p.GetNumber(), Name: p.GetName(), Protocol: proto, TargetPort: target})
	}
	slices.SortFunc(out, func(a, b *Port) int { return int(a.Number) - int(b.Number) })
	return out
}

// addresses keeps the IPs that name an outbound listener. A /32 or /128 CIDR is an IP
// to Istio too; 0.0.0.0 (headless) is not a per-service listener.
func addresses(in []string) []string {
	out := make([]string, 0, len(in))
	for _, a := range in {
		if i := strings.IndexByte(a, '/'); i > 0 && (a[i:] == "/32" || a[i:] == "/128") {
			a = a[:i]
		}
		if a == "0.0.0.0" || a == "::" || a == "" {
			continue
		}
		out = append(out, a)
	}
	return sortedUnique(out)
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// hostIndex finds the objects bound to a host, resolving short names the way Istio does.
type hostIndex[T any] struct {
	exact     map[string][]*Config[T]
	wildcards []wildcardEntry[T]
}

type wildcardEntry[T any] struct {
	host host.Name
	cfg  *Config[T]
}

// newHostIndex indexes the VirtualServices or DestinationRules (T) in cfgs by host.
func newHostIndex[T any](cfgs []Object, domainSuffix string) *hostIndex[T] {
	idx := &hostIndex[T]{exact: map[string][]*Config[T]{}}
	for _, c := range cfgs {
		spec, ok := c.Spec.(T)
		if !ok {
			continue
		}
		entry := &Config[T]{Name: c.Name, Namespace: c.Namespace, Spec: spec, Version: ConfigVersion(c), Created: c.Created}
		for _, h := range HostsOf(c, domainSuffix) {
			fqdn := host.Name(h)
			if fqdn.IsWildCarded() {
				idx.wildcards = append(idx.wildcards, wildcardEntry[T]{host: fqdn, cfg: entry})
				continue
			}
			idx.exact[string(fqdn)] = append(idx.exact[string(fqdn)], entry)
		}
	}
	return idx
}

func (idx *hostIndex[T]) lookup(hosts []string) []*Config[T] {
	var out []*Config[T]
	for _, h := range hosts {
		out = append(out, idx.exact[h]...)
		for _, w := range idx.wildcards {
			if w.host.Matches(host.Name(h)) {
				out = append(out, w.cfg)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Config[T]) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return slices.CompactFunc(out, func(a, b *Config[T]) bool { return a == b })
}

// destinationRules keeps the DestinationRules Istio's sidecars use for a service of
// namespace ns, as far as one choice can hold for every sidecar: those of the
// service's own namespace, else those of the root namespace (push_context.go,
// destinationRule), exported to every namespace. A DestinationRule of a third
// namespace applies only to that namespace's own sidecars, so it defines no subset
// here.
func destinationRules(drs []*Config[*networking.DestinationRule], ns, rootNamespace string) []*Config[*networking.DestinationRule] {
	mine := func(in string) []*Config[*networking.DestinationRule] {
		var out []*Config[*networking.DestinationRule]
		for _, dr := range drs {
			export := dr.Spec.GetExportTo()
			if dr.Namespace == in && (len(export) == 0 || slices.Contains(export, "*")) {
				out = append(out, dr)
			}
		}
		return out
	}
	if own := mine(ns); len(own) > 0 {
		return own
	}
	if rootNamespace == "" || rootNamespace == ns {
		return nil
	}
	return mine(rootNamespace)
}

// exportNamespaces resolves a ServiceEntry's exportTo: nil for every namespace (none
// given, or "*"), the namespaces otherwise ("." is its own; "~", none: an empty list).
func exportNamespaces(exportTo []string, namespace string) []string {
	if len(exportTo) == 0 || slices.Contains(exportTo, "*") {
		return nil
	}
	out := []string{}
	for _, e := range exportTo {
		switch e {
		case "~":
		case ".":
			out = append(out, namespace)
		default:
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// meshWide returns the VirtualServices exported to every namespace (no exportTo, or
// one with "*"). The filters a translation writes reach every sidecar; one exported
// to some namespaces only would route the clients of every other namespace too.
func meshWide(vss []Object) []Object {
	out := make([]Object, 0, len(vss))
	for _, o := range vss {
		vs, ok := o.Spec.(*networking.VirtualService)
		if ok && (len(vs.GetExportTo()) == 0 || slices.Contains(vs.GetExportTo(), "*")) {
			out = append(out, o)
		}
	}
	return out
}

// virtualServicePrecedence orders the VirtualServices of a service as Istio's sidecars
// choose among them for a host: one naming a host of the service exactly before one
// that matches it by a wildcard, a narrower wildcard before a broader one, then the
// oldest, then by name, then by namespace (configCompareByCreationTime). A newer
// object of any namespace cannot take a host that an older or more specific one has.
func virtualServicePrecedence(vss []*Config[*networking.VirtualService], hosts []string, domainSuffix string) []*Config[*networking.VirtualService] {
	specificity := func(vs *Config[*networking.VirtualService]) int {
		best := -1
		for _, h := range vs.Spec.GetHosts() {
			vh := ResolveHost(h, vs.Namespace, domainSuffix)
			for _, sh := range hosts {
				switch {
				case string(vh) == sh:
					return math.MaxInt
				case vh.IsWildCarded() && vh.Matches(host.Name(sh)):
					best = max(best, len(vh))
				}
			}
		}
		return best
	}
	rank := make(map[*Config[*networking.VirtualService]]int, len(vss))
	for _, vs := range vss {
		rank[vs] = specificity(vs)
	}
	slices.SortStableFunc(vss, func(a, b *Config[*networking.VirtualService]) int {
		return cmp.Or(
			cmp.Compare(rank[b], rank[a]),
			a.Created.Compare(b.Created),
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.Namespace, b.Namespace),
		)
	})
	return vss
}

// Bindable returns the Redis objects that may bind to services: those without a
// wildcard host. A wildcard would let one object configure services it does not name.
func Bindable(objs []Object, domainSuffix string) []Object {
	out := make([]Object, 0, len(objs))
	for _, o := range objs {
		if !slices.ContainsFunc(HostsOf(o, domainSuffix), func(h string) bool { return host.Name(h).IsWildCarded() }) {
			out = append(out, o)
		}
	}
	return out
}

// InScope reports whether an object of namespace ns may configure a service of
// namespace svcNamespace: its own namespace, or any from the root namespace.
func InScope(ns, svcNamespace, rootNamespace string) bool {
	return ns == svcNamespace || (rootNamespace != "" && ns == rootNamespace)
}

func inScope[T any](cfgs []*Config[T], svcNamespace, rootNamespace string) []*Config[T] {
	return slices.DeleteFunc(cfgs, func(c *Config[T]) bool { return !InScope(c.Namespace, svcNamespace, rootNamespace) })
}

// HostsOf returns the fully qualified hosts a VirtualService, DestinationRule,
// RedisService or RedisDestination binds to.
func HostsOf(c Object, domainSuffix string) []string {
	var hs []string
	switch spec := c.Spec.(type) {
	case *networking.VirtualService:
		hs = spec.GetHosts()
	case *networking.DestinationRule:
		hs = []string{spec.GetHost()}
	case *redisspec.RedisServiceSpec:
		hs = spec.Host
	case *redisspec.RedisDestinationSpec:
		hs = []string{spec.Host}
	default:
		return nil
	}
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, string(ResolveHost(h, c.Namespace, domainSuffix)))
	}
	return out
}

// ResolveHost completes a short host the way Istio does: a name without dots is
// <name>.<namespace>.svc.<domainSuffix>; anything with a dot, "*" and IPs stay as they are.
func ResolveHost(h, namespace, domainSuffix string) host.Name {
	if h == "*" || strings.Contains(h, ".") || strings.Contains(h, ":") || h == "" {
		return host.Name(h)
	}
	return host.Name(h + "." + namespace + ".svc." + domainSuffix)
}

// HostIndex finds services by fully qualified host.
type HostIndex map[string]*Service

// NewHostIndex indexes services by each of their hosts; of services sharing a host,
// the first by key keeps it, as it keeps the host's EnvoyFilters.
func NewHostIndex(services []*Service) HostIndex {
	idx := HostIndex{}
	for _, svc := range services {
		for _, h := range svc.Hosts {
			if _, taken := idx[h]; !taken {
				idx[h] = svc
			}
		}
	}
	return idx
}
