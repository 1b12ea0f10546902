package model

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
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
	// Addresses are the VIPs, or for a headless Kubernetes Service the addresses of
	// its ready endpoints: Istio builds one outbound listener <address>_<port> each.
	Addresses []string
	// Allocated are the addresses Istio allocated for the hosts of a ServiceEntry
	// without addresses of its own (its status.addresses; see allocatedAddresses),
	// by host and address: sidecars that capture DNS reach host through a listener
	// <address>_<port>; the others through 0.0.0.0_<port>, which is the service's
	// own only when the port is Wildcard.
	Allocated []HostAddress
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
	// Views are the namespaces whose sidecars Istio gives other routing for the
	// service than every other namespace's (a VirtualService or DestinationRule
	// exported to some namespaces only, or one of the client's own namespace), with
	// that routing; by namespace. Only namespaces that see the service have one.
	Views []*View
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
	// WorkloadPorts are the other numbers the selected WorkloadEntries serve the
	// port on (their ports map moves it), sorted: each has an inbound chain too.
	WorkloadPorts []uint32
	// Wildcard says the clients reach the port through istiod's listener
	// 0.0.0.0_<number>, which is the service's own: it has no address, resolves by
	// DNS, and is the only service without an address that declares the number.
	// Clients that use an address Istio allocated for it (Service.Allocated) have a
	// listener of that address instead.
	Wildcard bool
}

// InboundNumbers are the numbers the workloads serve the port on, each a filter
// chain of their virtualInbound listener and an inbound cluster: the target port,
// then WorkloadPorts.
func (p *Port) InboundNumbers() []uint32 {
	return append([]uint32{p.TargetPort}, p.WorkloadPorts...)
}

// HostAddress is an address of one host of a service.
type HostAddress struct {
	Host, Address string
}

// View is the routing Istio's sidecars of one namespace use for a service, where it
// is not the routing of every namespace (Service.VirtualServices and
// DestinationRules), in the same order.
type View struct {
	Namespace        string
	VirtualServices  []*Config[*networking.VirtualService]
	DestinationRules []*Config[*networking.DestinationRule]
}

// InView returns a copy of svc as the sidecars of v's namespace see it: v's routing,
// seen by that namespace only, and no views.
func (s *Service) InView(v *View) *Service {
	out := *s
	out.VirtualServices, out.DestinationRules = v.VirtualServices, v.DestinationRules
	out.ExportTo = []string{v.Namespace}
	out.Views = nil
	return &out
}

// Config is a named Istio object with its typed spec.
type Config[T any] struct {
	Name      string
	Namespace string
	Spec      T
	// ExportTo are the namespaces whose sidecars see a VirtualService or
	// DestinationRule (its exportTo, or the mesh's default for the kind, "." resolved),
	// sorted; nil when every namespace's do.
	ExportTo []string
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
	// WorkloadEntries have their networking.WorkloadEntry as Spec: a ports map moves a
	// service port to another number on that workload.
	WorkloadEntries []Object
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
	// ServiceEntryState returns what the apiserver has of a ServiceEntry beyond what
	// istiod sends; nil when it does not have the object.
	ServiceEntryState func(namespace, name string) (*ServiceEntryState, error)
	// DomainSuffix completes short hosts: name -> name.<namespace>.svc.<suffix>.
	DomainSuffix string
	// RootNamespace is Istio's root namespace: a RedisService or RedisDestination there
	// configures services of every namespace, one elsewhere only those of its own, as
	// Istio scopes its own root-namespace config.
	RootNamespace string
	// ExportDefaults are the mesh's exportTo for objects that set none.
	ExportDefaults ExportDefaults
}

// ServiceEntryState is what the apiserver has of a ServiceEntry that istiod's "api"
// generator sends late or never.
type ServiceEntryState struct {
	// Annotations: istiod pushes no change of a ServiceEntry's annotations alone, so
	// its copy can be stale.
	Annotations map[string]string
	// Labels: one opts the ServiceEntry out of address allocation.
	Labels map[string]string
	// Addresses are its status.addresses, as written: what Istio allocated for each
	// host. istiod sends no status.
	Addresses []HostAddress
}

// StatusAddresses returns a ServiceEntry status's addresses, as written.
func StatusAddresses(status *networking.ServiceEntryStatus) []HostAddress {
	var out []HostAddress
	for _, a := range status.GetAddresses() {
		out = append(out, HostAddress{Host: a.GetHost(), Address: a.GetValue()})
	}
	return out
}

// ExportDefaults are the mesh config's defaults for exportTo, by kind
// (defaultServiceExportTo, defaultVirtualServiceExportTo,
// defaultDestinationRuleExportTo): what an object without exportTo gets. Empty is
// every namespace, as in Istio.
type ExportDefaults struct {
	ServiceEntry, VirtualService, DestinationRule []string
}

// ExportDefaultsOf returns the export defaults of a mesh config; nil gives none.
func ExportDefaultsOf(mesh *meshconfig.MeshConfig) ExportDefaults {
	return ExportDefaults{
		ServiceEntry:    mesh.GetDefaultServiceExportTo(),
		VirtualService:  mesh.GetDefaultVirtualServiceExportTo(),
		DestinationRule: mesh.GetDefaultDestinationRuleExportTo(),
	}
}

// AutoallocateLabel set to "false" opts a ServiceEntry out of the addresses Istio
// allocates (label.NetworkingEnableAutoallocateIp).
const AutoallocateLabel = "networking.istio.io/enable-autoallocate-ip"

// allocatedAddresses returns the addresses istiod gives the hosts of a ServiceEntry
// from its status, as its conversion does (convertServices, with
// ShouldV2AutoAllocateIPFromConfig): only for one without addresses, not resolved
// NONE, not opted out by label; per host of the spec, the last IPv4 and the last IPv6
// address of the status. A proxy that uses them listens on the IPv4 one if it has
// IPv4, else on the IPv6 one, so both name a listener. istiod's own feature flag
// (PILOT_ENABLE_IP_AUTOALLOCATE) is not known here: with it off, istiod allocates
// nothing, and a stale status only names listeners that do not exist.
func allocatedAddresses(se *networking.ServiceEntry, state *ServiceEntryState, hosts []string) []HostAddress {
	if len(se.GetAddresses()) > 0 || se.GetResolution() == networking.ServiceEntry_NONE ||
		strings.EqualFold(state.Labels[AutoallocateLabel], "false") {
		return nil
	}
	type pair struct{ v4, v6 string }
	byHost := map[string]pair{}
	for _, a := range state.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || !slices.Contains(hosts, a.Host) {
			continue // istiod skips what does not parse, and reads only its hosts'
		}
		p := byHost[a.Host]
		switch {
		case ip.Is4():
			p.v4 = ip.String()
		case ip.Is6():
			p.v6 = ip.String()
		}
		byHost[a.Host] = p
	}
	var out []HostAddress
	for _, h := range hosts {
		p := byHost[h]
		for _, a := range []string{p.v4, p.v6} {
			if a != "" {
				out = append(out, HostAddress{Host: h, Address: a})
			}
		}
	}
	return out
}

// OutboundListeners returns the outbound listeners <address>_<port> istiod builds
// for the service's clients on port, each with the host whose traffic it carries:
// one per address (for the first host: Istio gives a listener shared by several
// hosts to the first of them), 0.0.0.0 for a Wildcard port, and one per address
// Istio allocated for a host (Allocated).
func (s *Service) OutboundListeners(port *Port) []HostAddress {
	out := make([]HostAddress, 0, len(s.Addresses)+len(s.Allocated)+1)
	if len(s.Hosts) > 0 {
		for _, a := range s.Addresses {
			out = append(out, HostAddress{Host: s.Hosts[0], Address: a})
		}
		if len(s.Addresses) == 0 && port.Wildcard {
			out = append(out, HostAddress{Host: s.Hosts[0], Address: "0.0.0.0"})
		}
	}
	return append(out, s.Allocated...)
}

func dnsResolved(se *networking.ServiceEntry) bool {
	r := se.GetResolution()
	return r == networking.ServiceEntry_DNS || r == networking.ServiceEntry_DNS_ROUND_ROBIN
}

// workloadPorts sets the WorkloadPorts of svc's ports from the WorkloadEntries of
// its namespace it selects, and returns those that move one of its ports.
func workloadPorts(svc *Service, entries []*Object) []*Object {
	if len(svc.WorkloadSelector) == 0 {
		return nil
	}
	var used []*Object
	for _, o := range entries {
		we, ok := o.Spec.(*networking.WorkloadEntry)
		if !ok || len(we.GetPorts()) == 0 || !selects(svc.WorkloadSelector, we.GetLabels()) {
			continue
		}
		moves := false
		for _, p := range svc.Ports {
			if n := we.GetPorts()[p.Name]; n != 0 && n != p.TargetPort && !slices.Contains(p.WorkloadPorts, n) {
				p.WorkloadPorts = append(p.WorkloadPorts, n)
				moves = true
			}
		}
		if moves {
			used = append(used, o)
		}
	}
	for _, p := range svc.Ports {
		slices.Sort(p.WorkloadPorts)
	}
	return used
}

// selects reports whether a workload selector matches labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// WorkloadSelectorAnnotation on a ServiceEntry without a workloadSelector selects
// its workloads as upstream Aeraki's registry bridges (dubbo2istio, zk2istio) write
// it: "<value>" for the label app=<value>, "<label>:<value>" for that label.
const WorkloadSelectorAnnotation = "workloadSelector"

// annotatedSelector reads WorkloadSelectorAnnotation; nil without one, or for a
// value of another shape.
func annotatedSelector(annotations map[string]string) map[string]string {
	v := strings.ReplaceAll(annotations[WorkloadSelectorAnnotation], " ", "")
	if v == "" {
		return nil
	}
	label, value, pair := strings.Cut(v, ":")
	switch {
	case !pair:
		return map[string]string{"app": v}
	case label == "" || value == "" || strings.Contains(value, ":"):
		return nil
	}
	return map[string]string{label: value}
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

// routing is the VirtualServices (in precedence order) and DestinationRules bound
// to a service's hosts, from which each namespace's sidecars take theirs.
type routing struct {
	vss                         []*Config[*networking.VirtualService]
	drs                         []*Config[*networking.DestinationRule]
	svcNamespace, rootNamespace string
}

// visibleTo reports whether the sidecars of namespace ns see an object exported to
// export (see Config.ExportTo); ns "" stands for every namespace.
func visibleTo(export []string, ns string) bool {
	return export == nil || (ns != "" && slices.Contains(export, ns))
}

// virtualServices returns the VirtualServices the sidecars of namespace ns see, in
// precedence order; "" for those every namespace sees.
func (r *routing) virtualServices(ns string) []*Config[*networking.VirtualService] {
	var out []*Config[*networking.VirtualService]
	for _, vs := range r.vss {
		if visibleTo(vs.ExportTo, ns) {
			out = append(out, vs)
		}
	}
	return out
}

// destinationRules returns the DestinationRules the sidecars of namespace ns use for
// the service, as Istio chooses them (push_context.go, destinationRule): those of
// the client's own namespace that it sees, else those of the service's namespace
// exported to it, else those of the root namespace exported to it; by namespace and
// name. ns "" is a namespace with none of its own, seeing what every namespace sees.
func (r *routing) destinationRules(ns string) []*Config[*networking.DestinationRule] {
	from := func(in, to string) []*Config[*networking.DestinationRule] {
		var out []*Config[*networking.DestinationRule]
		for _, dr := range r.drs {
			if dr.Namespace == in && visibleTo(dr.ExportTo, to) {
				out = append(out, dr)
			}
		}
		return out
	}
	if ns != "" {
		if own := from(ns, ns); len(own) > 0 {
			return own
		}
	}
	if own := from(r.svcNamespace, ns); len(own) > 0 {
		return own
	}
	if r.rootNamespace == "" || r.rootNamespace == r.svcNamespace {
		return nil
	}
	return from(r.rootNamespace, ns)
}

// views returns the namespaces whose sidecars use other routing for svc than
// every namespace does, but the root namespace. Only namespaces named by the rules
// can: those a rule is exported to, and those a DestinationRule lives in (a
// client's own namespace's rules come first). Views that route as every namespace does are left out: only
// the first VirtualService and the DestinationRules' subsets shape routes.
func (r *routing) views(svc *Service) []*View {
	if !r.scoped() {
		return nil
	}
	var candidates []string
	for _, vs := range r.vss {
		candidates = append(candidates, vs.ExportTo...)
	}
	for _, dr := range r.drs {
		candidates = append(candidates, dr.Namespace)
		candidates = append(candidates, dr.ExportTo...)
	}
	slices.Sort(candidates)
	var out []*View
	for _, ns := range slices.Compact(candidates) {
		// A filter in the root namespace would reach every sidecar: the root
		// namespace's own sidecars keep the routes of every namespace.
		if !visibleTo(svc.ExportTo, ns) || ns == r.rootNamespace {
			continue
		}
		v := &View{Namespace: ns, VirtualServices: r.virtualServices(ns), DestinationRules: r.destinationRules(ns)}
		if first(v.VirtualServices) == first(svc.VirtualServices) && slices.Equal(v.DestinationRules, svc.DestinationRules) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// scoped reports whether any rule can route some namespace differently: one
// exported to some namespaces only, or a DestinationRule of a client namespace (one
// neither of the service's namespace nor of the root namespace). Most services have
// none, and need no view computed on every push.
func (r *routing) scoped() bool {
	for _, vs := range r.vss {
		if vs.ExportTo != nil {
			return true
		}
	}
	for _, dr := range r.drs {
		if dr.ExportTo != nil || (dr.Namespace != r.svcNamespace && dr.Namespace != r.rootNamespace) {
			return true
		}
	}
	return false
}

func first[T any](s []*T) *T {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

// ExportNamespaces resolves an exportTo, the mesh's default for the kind standing in
// for an empty one: nil for every namespace ("*"), the namespaces otherwise ("." is
// the object's own; "~", none: an empty list).
func ExportNamespaces(exportTo, defaults []string, namespace string) []string {
	if len(exportTo) == 0 {
		exportTo = defaults
	}
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

// destinationRuleExport resolves a DestinationRule's exportTo: one with a workload
// selector is its own namespace's only, and of the mesh's defaults Istio honours
// only "." and "*".
func destinationRuleExport(dr *networking.DestinationRule, defaults []string, namespace string) []string {
	if dr.GetWorkloadSelector() != nil {
		return []string{namespace}
	}
	if len(dr.GetExportTo()) == 0 {
		defaults = slices.DeleteFunc(slices.Clone(defaults), func(e string) bool { return e != "." && e != "*" })
	}
	return ExportNamespaces(dr.GetExportTo(), defaults, namespace)
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
