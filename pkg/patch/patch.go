// Package patch builds the parts of Istio EnvoyFilters: the EnvoyFilters of a
// service port with their names and places (one builder per direction), network
// filter and cluster patches with their values checked the way Envoy checks them,
// and route rules read from VirtualServices. Generators build on it.
package patch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// TCPProxyFilter is the network filter Istio puts on every plain TCP listener.
const TCPProxyFilter = "envoy.filters.network.tcp_proxy"

// Operation says how a protocol filter joins the filter chain of a TCP listener.
type Operation int

const (
	// ReplaceTCPProxy puts the protocol filter in tcp_proxy's place: the protocol
	// filter routes the traffic itself.
	ReplaceTCPProxy Operation = iota
	// InsertBeforeTCPProxy adds the protocol filter in front of tcp_proxy, which still
	// forwards the bytes: the protocol filter only observes.
	InsertBeforeTCPProxy
)

// Direction tells outbound (client side) from inbound (server side) listeners.
type Direction string

// Directions, used in names and stat prefixes.
const (
	Outbound Direction = "outbound"
	Inbound  Direction = "inbound"
)

// Listener is one sidecar listener that carries a service port, with what a protocol
// filter needs to route on it.
type Listener struct {
	Direction Direction
	// Address is the VIP of an outbound listener <address>_<port>; empty inbound.
	Address string
	// Port is the service port outbound and the workload (target) port inbound.
	Port uint32
	// Host is the host whose clusters outbound traffic goes to; empty inbound.
	Host string
	// Cluster is where traffic goes when nothing more specific matches.
	Cluster string
	// StatPrefix names the filter's statistics after Istio's cluster name, for filters
	// whose statistics Envoy roots at their own name (dubbo, thrift, redis).
	StatPrefix string
	// StatName is <direction>_<port>_<host> with every character outside [a-z0-9] as
	// `_` (and `*` as `wildcard`): a prefix for filters whose statistics start with the
	// prefix itself, so that it survives Prometheus' name mangling readably. Every
	// listener of a host shares it; inbound listeners take the service's first host.
	StatName string
}

// FilterFunc builds the protocol's network filter for one listener.
type FilterFunc func(l *Listener) (*Filter, error)

// Filter is a network filter: Envoy's name for it and its typed config. The config
// stays a message (not packed into an Any) until it is written as a patch value,
// so that it is encoded once.
type Filter struct {
	Name   string
	Config proto.Message
}

// ListenerFilters returns the EnvoyFilters that put a protocol filter on every listener
// of one service port, in both directions (see Builder.ListenerFilter).
func ListenerFilters(ctx *generator.Context, svc *model.Service, port *model.Port, op Operation, build FilterFunc, opts ...Option) ([]*model.EnvoyFilter, error) {
	b, err := NewBuilder(ctx, svc, port, opts...)
	if err != nil {
		return nil, err
	}
	if err := b.ListenerFilter(op, build, Outbound, Inbound); err != nil {
		return nil, err
	}
	return b.Filters(), nil
}

// MaxOutboundAddresses bounds the addresses of a service whose outbound side gets a
// patch per address: each costs about 1 to 2 KiB of EnvoyFilter, and the apiserver
// stores objects of about 1.5 MiB at most.
const MaxOutboundAddresses = 500

// ErrNoListener is a service port that has no listener to patch in the directions
// asked for: no address (no outbound listener of its own) and no workload selector
// (no inbound listener).
var ErrNoListener = errors.New("the service has neither an address (no outbound listener of its own) nor a workload selector (no inbound listener to patch)")

// Builder builds the EnvoyFilters of one service port, at most one per direction,
// named and placed by one rule:
//   - outbound: aeraki-outbound-<host>-<port> in the root namespace, so that it
//     applies to every sidecar;
//   - inbound: aeraki-inbound-<host>-<port> in the service's namespace, selecting
//     the service's workloads. It is not in the root namespace because a selector
//     there would match workloads of every namespace.
//
// The host is the service's first. Istio makes one service per (host, address) and
// gives a listener shared by several hosts to the first of them in order, so outbound
// traffic of a multi-host ServiceEntry belongs to its first host; routing rules of
// every host still apply through the generator. An address Istio allocated is one
// host's alone: its listener goes to that host.
type Builder struct {
	ctx  *generator.Context
	svc  *model.Service
	port *model.Port
	// proxy, when set, is the proxy match of every patch.
	proxy *networking.EnvoyFilter_ProxyMatch
	// filters in the order they were first patched.
	filters []*model.EnvoyFilter
}

// Option configures a Builder.
type Option func(*Builder)

// ForProxiesWithMetadata makes every patch of the builder match only proxies whose
// node metadata has each of the keys with exactly its value (the patches'
// match.proxy.metadata). istiod leaves every other proxy's config as it would be
// without the patch: the way to send a filter only to proxy builds that have it. A
// sidecar's node metadata <KEY> comes from ISTIO_META_<KEY> in its environment or its
// proxyMetadata. No keys is no proxy match.
func ForProxiesWithMetadata(metadata map[string]string) Option {
	return func(b *Builder) {
		if len(metadata) == 0 {
			b.proxy = nil
			return
		}
		b.proxy = &networking.EnvoyFilter_ProxyMatch{Metadata: maps.Clone(metadata)}
	}
}

// NewBuilder returns a builder for one service port; a service without hosts is an
// error.
func NewBuilder(ctx *generator.Context, svc *model.Service, port *model.Port, opts ...Option) (*Builder, error) {
	if len(svc.Hosts) == 0 {
		return nil, errors.New("the service has no hosts")
	}
	b := &Builder{ctx: ctx, svc: svc, port: port}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Filters returns the EnvoyFilters built so far. The outbound one of a service that
// only some namespaces see (exportTo) is in each of those namespaces instead of the
// root namespace: Istio gives the service's listeners to those namespaces' sidecars
// only, and its config (Redis credentials among it) then reaches no other sidecar.
// The root namespace itself gets none: a filter there reaches every sidecar, so
// the root namespace's own sidecars keep plain TCP for such a service.
func (b *Builder) Filters() []*model.EnvoyFilter {
	if b.svc.ExportTo == nil {
		return b.filters
	}
	var out []*model.EnvoyFilter
	for _, ef := range b.filters {
		if ef.Namespace != b.ctx.RootNamespace || ef.Spec.GetWorkloadSelector() != nil {
			out = append(out, ef)
			continue
		}
		for _, ns := range b.svc.ExportTo {
			if ns == b.ctx.RootNamespace {
				continue
			}
			c := *ef
			c.Namespace = ns
			c.Spec = proto.Clone(ef.Spec).(*networking.EnvoyFilter)
			out = append(out, &c)
		}
	}
	return out
}

// filter returns the EnvoyFilter of direction d, created when missing. The inbound
// side needs a workload selector.
func (b *Builder) filter(d Direction) (*model.EnvoyFilter, error) {
	name, namespace := ObjectName(d, b.svc.Hosts[0], b.port.Number), b.ctx.RootNamespace
	if d == Inbound {
		if b.svc.WorkloadSelector == nil {
			return nil, errors.New("the service has no workload selector: there is no inbound side to patch")
		}
		namespace = b.svc.Namespace
	}
	for _, ef := range b.filters {
		if ef.Name == name && ef.Namespace == namespace {
			return ef, nil
		}
	}
	ef := &model.EnvoyFilter{
		Name:        name,
		Namespace:   namespace,
		Labels:      model.ManagedLabels(),
		Annotations: map[string]string{model.ServiceAnnotation: b.svc.Key()},
		Spec:        &networking.EnvoyFilter{},
	}
	if d == Inbound {
		ef.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: b.svc.WorkloadSelector}
	}
	b.filters = append(b.filters, ef)
	return ef, nil
}

// Add appends patches to the EnvoyFilter of direction d, with the builder's proxy
// match (ForProxiesWithMetadata). A patch that names another proxy match is an
// error: the builder's must hold for all of them.
func (b *Builder) Add(d Direction, patches ...*networking.EnvoyFilter_EnvoyConfigObjectPatch) error {
	if len(patches) == 0 {
		return nil
	}
	if b.proxy != nil {
		matched := make([]*networking.EnvoyFilter_EnvoyConfigObjectPatch, 0, len(patches))
		for _, p := range patches {
			if own := p.GetMatch().GetProxy(); own != nil && !proto.Equal(own, b.proxy) {
				return fmt.Errorf("a %v patch matches proxies %v, not the builder's %v", p.GetApplyTo(), own, b.proxy)
			}
			// A copy: the caller's patch stays as it was.
			p = proto.Clone(p).(*networking.EnvoyFilter_EnvoyConfigObjectPatch)
			if p.Match == nil {
				p.Match = &networking.EnvoyFilter_EnvoyConfigObjectMatch{}
			}
			p.Match.Proxy = proto.Clone(b.proxy).(*networking.EnvoyFilter_ProxyMatch)
			matched = append(matched, p)
		}
		patches = matched
	}
	ef, err := b.filter(d)
	if err != nil {
		return err
	}
	ef.Spec.ConfigPatches = append(ef.Spec.ConfigPatches, patches...)
	return nil
}

// ListenerFilter puts a protocol filter on every listener of the port in the
// directions given:
//   - outbound: a patch for each listener <address>_<port> istiod builds for the
//     service's clients (model.Service.OutboundListeners): its VIPs, 0.0.0.0 for a
//     Wildcard port, the addresses Istio allocated. A patch of a listener a proxy
//     does not have (an allocated address, on a proxy that does not capture DNS)
//     matches nothing there.
//   - inbound: a patch of the virtualInbound filter chain of the target port, and of
//     each number WorkloadEntries move the port to. A service without a workload
//     selector has no inbound side in the mesh.
//
// A port with no listener in any of the directions is ErrNoListener.
func (b *Builder) ListenerFilter(op Operation, build FilterFunc, dirs ...Direction) error {
	listeners := b.svc.OutboundListeners(b.port)
	outbound := slices.Contains(dirs, Outbound) && len(listeners) > 0
	inbound := slices.Contains(dirs, Inbound) && b.svc.WorkloadSelector != nil
	if !outbound && !inbound {
		return ErrNoListener
	}
	port := b.port
	if outbound {
		if n := len(listeners); n > MaxOutboundAddresses {
			return fmt.Errorf("%d addresses: a patch each would make an EnvoyFilter larger than the apiserver stores; "+
				"at most %d per service (or share the port: see the route server)", n, MaxOutboundAddresses)
		}
		var patches []*networking.EnvoyFilter_EnvoyConfigObjectPatch
		for _, la := range listeners {
			if strings.Contains(la.Address, "/") {
				return fmt.Errorf("address %s is a CIDR range: Istio has no per-service listener for it", la.Address)
			}
			l := &Listener{
				Direction:  Outbound,
				Address:    la.Address,
				Port:       port.Number,
				Host:       la.Host,
				Cluster:    model.OutboundClusterName(port.Number, "", la.Host),
				StatPrefix: model.OutboundClusterName(port.Number, "", la.Host),
				StatName:   statName(Outbound, port.Number, la.Host),
			}
			p, err := networkFilterPatch(l, op, build)
			if err != nil {
				return err
			}
			patches = append(patches, p)
		}
		if err := b.Add(Outbound, patches...); err != nil {
			return err
		}
	}
	if inbound {
		if port.TargetPort == 0 {
			return fmt.Errorf("port %s (%d) has a named targetPort: set a numeric targetPort so the inbound listener can be found", port.Name, port.Number)
		}
		// A chain per number the workloads serve the port on: the target port, and
		// those WorkloadEntries' ports maps move it to.
		for _, number := range port.InboundNumbers() {
			l := &Listener{
				Direction:  Inbound,
				Port:       number,
				Cluster:    model.InboundClusterName(number),
				StatPrefix: model.InboundClusterName(number),
				StatName:   statName(Inbound, number, b.svc.Hosts[0]),
			}
			p, err := networkFilterPatch(l, op, build)
			if err != nil {
				return err
			}
			if err := b.Add(Inbound, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func networkFilterPatch(l *Listener, op Operation, build FilterFunc) (*networking.EnvoyFilter_EnvoyConfigObjectPatch, error) {
	filter, err := build(l)
	if err != nil {
		return nil, err
	}
	value, err := FilterValue(filter)
	if err != nil {
		return nil, fmt.Errorf("%s listener for port %d: %w", l.Direction, l.Port, err)
	}
	match := &networking.EnvoyFilter_ListenerMatch{
		FilterChain: &networking.EnvoyFilter_ListenerMatch_FilterChainMatch{
			Filter: &networking.EnvoyFilter_ListenerMatch_FilterMatch{Name: TCPProxyFilter},
		},
	}
	patchContext := networking.EnvoyFilter_SIDECAR_OUTBOUND
	if l.Direction == Outbound {
		match.Name = l.Address + "_" + strconv.FormatUint(uint64(l.Port), 10)
	} else {
		patchContext = networking.EnvoyFilter_SIDECAR_INBOUND
		match.Name = "virtualInbound"
		match.FilterChain.DestinationPort = l.Port
	}
	operation := networking.EnvoyFilter_Patch_REPLACE
	if op == InsertBeforeTCPProxy {
		operation = networking.EnvoyFilter_Patch_INSERT_BEFORE
	}
	return &networking.EnvoyFilter_EnvoyConfigObjectPatch{
		ApplyTo: networking.EnvoyFilter_NETWORK_FILTER,
		Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{
			Context:     patchContext,
			ObjectTypes: &networking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: match},
		},
		Patch: &networking.EnvoyFilter_Patch{Operation: operation, Value: value},
	}, nil
}

// NetworkFilter names a filter's typed config.
func NetworkFilter(name string, config proto.Message) *Filter {
	return &Filter{Name: name, Config: config}
}

// FilterValue turns a network filter into an EnvoyFilter patch value, after checking
// it the way Envoy will (see ValidateFilterValue).
func FilterValue(f *Filter) (*structpb.Struct, error) {
	if err := validate(f); err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	typed, err := typedValue(f.Config.ProtoReflect(), typeURL(f.Config.ProtoReflect()))
	if err != nil {
		return nil, fmt.Errorf("%w: filter %s: %w", generator.ErrInvalidFilter, f.Name, err)
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"name":        structpb.NewStringValue(f.Name),
		"typedConfig": typed,
	}}, nil
}

// ValidateFilterValue checks a network filter patch value: strict JSON into Envoy's
// Filter type (unknown fields and unknown @types fail), then the protoc-gen-validate
// rules of the filter and of the typed config inside it. istiod drops a patch that
// fails to convert without telling anyone; this is the check that it will not.
func ValidateFilterValue(value *structpb.Struct) error {
	f := &listener.Filter{}
	if err := fromStruct(value, f, "an Envoy network filter"); err != nil {
		return err
	}
	if f.GetTypedConfig() == nil {
		return fmt.Errorf("filter %s has no typed_config", f.GetName())
	}
	config, err := f.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return fmt.Errorf("filter %s: %w", f.GetName(), err)
	}
	return validate(&Filter{Name: f.GetName(), Config: config})
}

// fromStruct decodes a patch value strictly into an Envoy message: unknown fields
// and unknown @types fail, as they would fail in istiod.
func fromStruct(value *structpb.Struct, into proto.Message, what string) error {
	raw, err := protojson.Marshal(value)
	if err != nil {
		return fmt.Errorf("encoding patch value: %w", err)
	}
	if err := protojson.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("patch value is not %s: %w", what, err)
	}
	return nil
}

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// validate checks a filter by the rules of Envoy's Filter and of its typed config
// (ValidateAll of a Filter does not look inside the Any, so the config is checked
// itself).
func validate(f *Filter) error {
	if f.Config == nil {
		return fmt.Errorf("filter %s has no typed_config", f.Name)
	}
	// The Filter's own rules, on a stand-in whose Any names the config's type.
	outer := &listener.Filter{Name: f.Name, ConfigType: &listener.Filter_TypedConfig{TypedConfig: &anypb.Any{
		TypeUrl: typeURL(f.Config.ProtoReflect()),
	}}}
	if err := outer.ValidateAll(); err != nil {
		return fmt.Errorf("invalid filter %s: %w", f.Name, err)
	}
	if v, ok := f.Config.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("invalid %s config: %w", f.Name, err)
		}
	}
	return nil
}

// maxNameLength is the longest Kubernetes object name.
const maxNameLength = 253

// ObjectName is the stable name of the EnvoyFilter for one direction of a host's port:
// aeraki-<direction>-<host>-<port>. A host that is not already a valid name as it is
// (upper case, "*", "_", ...) becomes one completed with a hash of the exact host, and
// a host too long for a Kubernetes name is cut and completed the same way: two hosts
// that differ only in case or in such characters never share a name, so one service
// cannot take another's EnvoyFilter.
func ObjectName(d Direction, host string, port uint32) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.ReplaceAll(host, "*", "wildcard")) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '.' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	prefix := "aeraki-" + string(d) + "-"
	suffix := "-" + strconv.FormatUint(uint64(port), 10)
	h := strings.Trim(b.String(), ".-")
	exact := h == host
	if long := len(prefix)+len(h)+len(suffix) > maxNameLength; long || !exact {
		sum := sha256.Sum256([]byte(host))
		hash := hex.EncodeToString(sum[:])[:10]
		keep := len(h)
		if long {
			keep = maxNameLength - len(prefix) - len(suffix) - len(hash) - 1
		}
		h = strings.Trim(h[:keep], ".-") + "-" + hash
	}
	return prefix + h + suffix
}

func statName(d Direction, port uint32, host string) string {
	var b strings.Builder
	b.WriteString(string(d) + "_" + strconv.FormatUint(uint64(port), 10) + "_")
	for _, r := range strings.ToLower(host) {
		switch {
		case r == '*':
			b.WriteString("wildcard")
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
