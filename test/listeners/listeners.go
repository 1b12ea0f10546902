// Package listeners proves that generated EnvoyFilters take effect: it runs the
// translation exactly as `aeraki generate` does, feeds the Istio config and the
// generated EnvoyFilters to istiod's own in-process discovery server
// (istio.io/istio/pilot/test/xds) and returns the listeners istiod builds for a
// sidecar, EnvoyFilter patches applied.
//
// The package is test-only: nothing outside tests imports it.
package listeners

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/model"
	kubereg "istio.io/istio/pilot/pkg/serviceregistry/kube"
	"istio.io/istio/pilot/pkg/serviceregistry/serviceentry"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/manifest"
	amodel "aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

// The settings `aeraki generate` uses by default, and the ones istio's fake server
// runs with (mesh.DefaultMeshConfig: rootNamespace istio-system; cluster.local).
const (
	RootNamespace = "istio-system"
	DomainSuffix  = "cluster.local"
	// ClusterID is the cluster of the fake server's Kubernetes registry.
	ClusterID = cluster.ID("Kubernetes")
	// IstioVersion is the version the sidecars claim: the istio.io/istio module's.
	IstioVersion = "1.31.0"
)

// Mesh is an in-process istiod fed the user's config and our EnvoyFilters.
type Mesh struct {
	// Server is istio's fake discovery server.
	Server *xds.FakeDiscoveryServer
	// EnvoyFilters are the generated filters, ordered by key.
	EnvoyFilters []*amodel.EnvoyFilter
	// EnvoyFilterYAML is what `aeraki generate` prints for the input, and what istiod got.
	EnvoyFilterYAML string
	// Skipped are the ports a generator left as plain TCP on purpose, by service key.
	Skipped map[string][]*translate.ServiceError
	// Routes are the route configurations of shared ports, by name.
	Routes map[string]*amodel.RouteConfig
}

// New translates istioYAML (ServiceEntries, VirtualServices, DestinationRules, and
// anything else istiod reads, such as WorkloadEntries) plus the Kubernetes Services
// among kube, fails t on any generation failure, and starts istiod with istioYAML, the
// generated EnvoyFilters and the Kubernetes objects (Services, Pods, ...).
//
// Every object in istioYAML must name its namespace: `aeraki generate` defaults a
// missing one to "default", istio's fake leaves it empty.
func New(t testing.TB, istioYAML string, kube ...runtime.Object) *Mesh {
	t.Helper()
	return NewWithOptions(t, plugin.Options{}, istioYAML, kube...)
}

// NewWithOptions is New with the generators' options, as the controller flags set them
// (`aeraki generate --kafka-contrib-filter`, for example).
func NewWithOptions(t testing.TB, opts plugin.Options, istioYAML string, kube ...runtime.Object) *Mesh {
	t.Helper()
	return NewIn(t, generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix}, opts, istioYAML, kube...)
}

// NewIn is NewWithOptions in a generator context of the caller's (a route server, for
// example).
func NewIn(t testing.TB, ctx generator.Context, opts plugin.Options, istioYAML string, kube ...runtime.Object) *Mesh {
	t.Helper()
	tr := TranslateIn(t, ctx, opts, istioYAML, kube...)
	efs, skipped := translate.SortedFilters(tr.Filters), tr.Skipped
	var buf bytes.Buffer
	if err := manifest.WriteEnvoyFilters(&buf, efs); err != nil {
		t.Fatalf("writing EnvoyFilters: %v", err)
	}
	m := &Mesh{EnvoyFilters: efs, EnvoyFilterYAML: buf.String(), Skipped: skipped, Routes: tr.Routes}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("generated EnvoyFilters:\n%s", m.EnvoyFilterYAML)
		}
	})
	cfg := strings.TrimSpace(istioYAML)
	if m.EnvoyFilterYAML != "" {
		cfg += "\n---\n" + m.EnvoyFilterYAML
	}
	m.Server = Istiod(t, cfg, kube...)
	return m
}

// Istiod starts istio's in-process discovery server with Istio config (YAML, which
// istio validates as its webhook would: a bad object fails t) and Kubernetes objects.
func Istiod(t testing.TB, istioYAML string, kube ...runtime.Object) *xds.FakeDiscoveryServer {
	t.Helper()
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		ConfigString:      istioYAML,
		KubernetesObjects: kube,
	})
	if got := s.PushContext().Mesh.GetRootNamespace(); got != RootNamespace {
		t.Fatalf("istiod's root namespace is %q, translation assumed %q", got, RootNamespace)
	}
	return s
}

// Translate runs the translation exactly as `aeraki generate` does, Kubernetes Services
// among kube included. Any ServiceError fails t; a port a generator chose to skip is logged.
func Translate(t testing.TB, istioYAML string, kube ...runtime.Object) []*amodel.EnvoyFilter {
	t.Helper()
	efs, _ := TranslateWithOptions(t, plugin.Options{}, istioYAML, kube...)
	return efs
}

// TranslateWithOptions is Translate with the generators' options. It also returns the
// ports a generator chose to leave as plain TCP (SkipErrors), by service key, so that a
// test can assert them.
func TranslateWithOptions(t testing.TB, opts plugin.Options, istioYAML string, kube ...runtime.Object) ([]*amodel.EnvoyFilter, map[string][]*translate.ServiceError) {
	t.Helper()
	tr := TranslateIn(t, generator.Context{RootNamespace: RootNamespace, DomainSuffix: DomainSuffix}, opts, istioYAML, kube...)
	return translate.SortedFilters(tr.Filters), tr.Skipped
}

// TranslateIn is TranslateWithOptions in a generator context of the caller's (a route
// server, for example), returning the whole translation.
func TranslateIn(t testing.TB, ctx generator.Context, opts plugin.Options, istioYAML string, kube ...runtime.Object) *translate.Translation {
	t.Helper()
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(istioYAML), "istioYAML"); len(errs) > 0 {
		t.Fatalf("reading Istio config: %v", errors.Join(errs...))
	}
	for _, o := range kube {
		switch o := o.(type) {
		case *corev1.Service:
			objs.Services = append(objs.Services, o)
		case *discoveryv1.EndpointSlice:
			objs.EndpointSlices = append(objs.EndpointSlices, *o)
		}
	}
	snap := objs.Snapshot(DomainSuffix)
	tr, err := translate.Translate(ctx, plugin.Registry(opts), snap)
	if err != nil {
		t.Fatalf("translating: %v", err)
	}
	for _, serr := range translate.SortedErrors(tr.Failed) {
		t.Errorf("translation failed: %v", serr)
	}
	for _, skipped := range tr.Skipped {
		for _, s := range skipped {
			t.Logf("left as plain TCP: %v", s)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The tests read the specs: unpacked, as the apiserver and istiod see them.
	for k, ef := range tr.Filters {
		tr.Filters[k] = ef.Unpacked()
	}
	return tr
}

// IstiodServiceEntry is the ServiceEntry istiod's "api" generator serves for a
// Kubernetes Service (synthetic-<name>: host <name>.<namespace>.svc.cluster.local,
// the ClusterIP as address, ports by name, the selector as workload selector, no
// annotations and no target ports), made by istiod's own conversion functions.
func IstiodServiceEntry(svc *corev1.Service) config.Config {
	ms := kubereg.ConvertService(*svc, nil, DomainSuffix, ClusterID, DomainSuffix)
	return *serviceentry.ServiceToServiceEntry(ms, &model.Proxy{Metadata: &model.NodeMetadata{}})
}

// KubeObjects decodes Kubernetes YAML documents (separated by ---) of built-in kinds.
func KubeObjects(t testing.TB, docs string) []runtime.Object {
	t.Helper()
	var out []runtime.Object
	reader := kubeyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(docs)))
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading Kubernetes YAML: %v", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if err != nil {
			t.Fatalf("decoding Kubernetes object: %v\n%s", err, raw)
		}
		out = append(out, obj)
	}
}

// Proxy describes a sidecar.
type Proxy struct {
	// Name is the pod name; the proxy ID is <Name>.<Namespace>, which is how istiod
	// finds a proxy's Pod.
	Name      string
	Namespace string
	IP        string
	Labels    map[string]string
	// Metadata is node metadata the sidecar declares beyond what SetupProxy sets, as
	// istiod keeps it (a variable ISTIO_META_<KEY> of the proxy arrives as <KEY>):
	// what an EnvoyFilter's match.proxy.metadata compares with.
	Metadata map[string]string
	// DNSCapture is the node metadata DNS_CAPTURE (ISTIO_META_DNS_CAPTURE=true): the
	// sidecar resolves DNS itself, and, with istiod's default address allocation,
	// reaches a ServiceEntry without addresses on the address Istio allocated.
	DNSCapture bool
}

// SetupProxy returns the sidecar proxy as istiod sees it once connected: sidecar
// scope and service targets (what makes inbound filter chains) resolved. Labels
// are set on the proxy itself too: they are what an EnvoyFilter's workloadSelector
// matches (istiod copies them from the node metadata on connect; SetupProxy does not).
func (m *Mesh) SetupProxy(p Proxy) *model.Proxy {
	raw := make(map[string]any, len(p.Metadata))
	for k, v := range p.Metadata {
		raw[k] = v
	}
	return m.Server.SetupProxy(&model.Proxy{
		Type:            model.SidecarProxy,
		ID:              p.Name + "." + p.Namespace,
		IPAddresses:     []string{p.IP},
		ConfigNamespace: p.Namespace,
		Labels:          p.Labels,
		DNSDomain:       p.Namespace + ".svc." + DomainSuffix,
		Metadata: &model.NodeMetadata{
			Namespace:    p.Namespace,
			Labels:       p.Labels,
			ClusterID:    ClusterID,
			IstioVersion: IstioVersion,
			DNSCapture:   model.StringBool(p.DNSCapture),
			Raw:          raw,
		},
	})
}

// Listeners returns the listeners istiod builds for the sidecar.
func (m *Mesh) Listeners(p Proxy) []*listener.Listener {
	return m.Server.Listeners(m.SetupProxy(p))
}

// VirtualInbound is the name of the sidecar's inbound listener.
const VirtualInbound = "virtualInbound"

// Find returns the listener named name, or nil.
func Find(ls []*listener.Listener, name string) *listener.Listener {
	for _, l := range ls {
		if l.GetName() == name {
			return l
		}
	}
	return nil
}

// Names lists the listener names, for messages.
func Names(ls []*listener.Listener) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, l.GetName())
	}
	return out
}

// InboundChains returns the filter chains of virtualInbound whose match names
// destination port is port: the chains of one workload port (one per transport:
// mTLS, plaintext).
func InboundChains(ls []*listener.Listener, port uint32) []*listener.FilterChain {
	var out []*listener.FilterChain
	for _, fc := range Find(ls, VirtualInbound).GetFilterChains() {
		if fc.GetFilterChainMatch().GetDestinationPort().GetValue() == port {
			out = append(out, fc)
		}
	}
	return out
}

// FilterNames lists the network filters of a chain, in order.
func FilterNames(fc *listener.FilterChain) []string {
	out := make([]string, 0, len(fc.GetFilters()))
	for _, f := range fc.GetFilters() {
		out = append(out, f.GetName())
	}
	return out
}

// Filter returns the network filter named name in the chain, or nil.
func Filter(fc *listener.FilterChain, name string) *listener.Filter {
	for _, f := range fc.GetFilters() {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

// ValidateFilter checks a network filter as Envoy would: its own rules and those of
// the typed config inside it (ValidateAll does not look into an Any). istiod converts
// patch values leniently, dropping unknown fields, so a filter it accepted can still
// lack a required field.
func ValidateFilter(f *listener.Filter) error {
	if err := f.ValidateAll(); err != nil {
		return err
	}
	inner, err := f.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return fmt.Errorf("filter %s: %w", f.GetName(), err)
	}
	if v, ok := inner.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("filter %s: %w", f.GetName(), err)
		}
	}
	return nil
}

// CheckApplied fails t for every patch of the generated EnvoyFilters that did not take
// effect: the listener it names (and, on virtualInbound, the filter chains of its
// destination port) must exist and carry the patch's filter exactly once in every
// matching chain, where the operation puts it:
//   - REPLACE: the filter it replaced (match.listener.filterChain.filter.name) is gone;
//   - INSERT_BEFORE / INSERT_AFTER: the filter sits immediately before / after the one
//     it was inserted next to, which is still there;
//   - INSERT_FIRST: the filter is the chain's first.
//
// A REPLACE or INSERT_BEFORE/AFTER that names no filter to match is an error: istiod
// skips such a REPLACE and puts such an insert at the start or end of the chain. Other
// operations (ADD, MERGE, REMOVE) and applyTo values are reported as unknown. istiod
// drops a patch it cannot convert with a log line only; this is what catches it.
// outbound are the listeners of a client sidecar, inbound those of a workload of the
// service.
func (m *Mesh) CheckApplied(t testing.TB, outbound, inbound []*listener.Listener) {
	t.Helper()
	for _, ef := range m.EnvoyFilters {
		for i, p := range ef.Spec.GetConfigPatches() {
			where := fmt.Sprintf("EnvoyFilter %s patch %d", ef.Key(), i)
			if p.GetApplyTo() != networking.EnvoyFilter_NETWORK_FILTER {
				t.Errorf("%s: applyTo %v: CheckApplied only knows NETWORK_FILTER", where, p.GetApplyTo())
				continue
			}
			op := p.GetPatch().GetOperation()
			match := p.GetMatch().GetListener()
			anchor := match.GetFilterChain().GetFilter().GetName()
			switch op {
			case networking.EnvoyFilter_Patch_REPLACE, networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER:
				if anchor == "" {
					t.Errorf("%s: %v names no filter to match (match.listener.filterChain.filter.name): istiod skips it or puts it at the wrong place", where, op)
					continue
				}
			case networking.EnvoyFilter_Patch_INSERT_FIRST:
			default:
				t.Errorf("%s: operation %v: CheckApplied only knows REPLACE, INSERT_BEFORE, INSERT_AFTER and INSERT_FIRST", where, op)
				continue
			}
			ls := outbound
			if p.GetMatch().GetContext() == networking.EnvoyFilter_SIDECAR_INBOUND {
				ls = inbound
			}
			l := Find(ls, match.GetName())
			if l == nil {
				t.Errorf("%s: no listener %q in %v", where, match.GetName(), Names(ls))
				continue
			}
			var chains []*listener.FilterChain
			for _, fc := range l.GetFilterChains() {
				if port := match.GetFilterChain().GetDestinationPort(); port == 0 || fc.GetFilterChainMatch().GetDestinationPort().GetValue() == port {
					chains = append(chains, fc)
				}
			}
			if len(chains) == 0 {
				t.Errorf("%s: listener %s has no filter chain for destination port %d", where, l.GetName(), match.GetFilterChain().GetDestinationPort())
				continue
			}
			name := p.GetPatch().GetValue().GetFields()["name"].GetStringValue()
			for _, fc := range chains {
				if err := checkPosition(FilterNames(fc), name, op, anchor); err != nil {
					t.Errorf("%s: listener %s chain %q: %v: filters %v", where, l.GetName(), fc.GetName(), err, FilterNames(fc))
				}
			}
		}
	}
}

// checkPosition says whether filter name sits in a chain's filters where the operation
// op, matched on the filter anchor, puts it.
func checkPosition(filters []string, name string, op networking.EnvoyFilter_Patch_Operation, anchor string) error {
	at := -1
	for i, f := range filters {
		if f != name {
			continue
		}
		if at >= 0 {
			return fmt.Errorf("%s is there more than once", name)
		}
		at = i
	}
	if at < 0 {
		return fmt.Errorf("lacks %s (istiod dropped the patch?)", name)
	}
	other := slices.Index(filters, anchor)
	switch op {
	case networking.EnvoyFilter_Patch_REPLACE:
		if anchor != name && other >= 0 {
			return fmt.Errorf("still has %s after REPLACE", anchor)
		}
	case networking.EnvoyFilter_Patch_INSERT_BEFORE:
		switch {
		case other < 0:
			return fmt.Errorf("%s was inserted before %s, which is gone", name, anchor)
		case other != at+1:
			return fmt.Errorf("%s (at %d) is not immediately before %s (at %d)", name, at, anchor, other)
		}
	case networking.EnvoyFilter_Patch_INSERT_AFTER:
		switch {
		case other < 0:
			return fmt.Errorf("%s was inserted after %s, which is gone", name, anchor)
		case at != other+1:
			return fmt.Errorf("%s (at %d) is not immediately after %s (at %d)", name, at, anchor, other)
		}
	case networking.EnvoyFilter_Patch_INSERT_FIRST:
		if at != 0 {
			return fmt.Errorf("%s is at %d, not first", name, at)
		}
	}
	return nil
}
