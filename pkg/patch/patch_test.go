package patch

import (
	"errors"
	"slices"
	"strings"
	"testing"

	tcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// tcpFilter stands in for a protocol filter: a tcp_proxy to the listener's cluster.
func tcpFilter(l *Listener) (*Filter, error) {
	return NetworkFilter(TCPProxyFilter, &tcp.TcpProxy{
		StatPrefix:       l.StatPrefix,
		ClusterSpecifier: &tcp.TcpProxy_Cluster{Cluster: l.Cluster},
	}), nil
}

func TestListenerFilters(t *testing.T) {
	svc := &model.Service{
		Name: "s", Namespace: "ns", Hosts: []string{"a.example", "b.example"},
		Addresses:        []string{"10.0.0.1", "10.0.0.2"},
		WorkloadSelector: map[string]string{"app": "s"},
	}
	port := &model.Port{Number: 9000, TargetPort: 9001, Protocol: model.ZooKeeper}
	efs, err := ListenerFilters(&generator.Context{RootNamespace: "root"}, svc, port, InsertBeforeTCPProxy, tcpFilter)
	if err != nil {
		t.Fatal(err)
	}
	if len(efs) != 2 {
		t.Fatalf("got %d EnvoyFilters, want outbound and inbound", len(efs))
	}
	out, in := efs[0], efs[1]
	if out.Namespace != "root" || out.Spec.WorkloadSelector != nil || len(out.Spec.ConfigPatches) != 2 {
		t.Errorf("outbound: namespace %q, selector %v, %d patches", out.Namespace, out.Spec.WorkloadSelector, len(out.Spec.ConfigPatches))
	}
	for i, vip := range svc.Addresses {
		p := out.Spec.ConfigPatches[i]
		if got := p.GetMatch().GetListener().GetName(); got != vip+"_9000" {
			t.Errorf("outbound patch %d listener = %q", i, got)
		}
		if p.GetMatch().GetContext() != networking.EnvoyFilter_SIDECAR_OUTBOUND || p.GetPatch().GetOperation() != networking.EnvoyFilter_Patch_INSERT_BEFORE {
			t.Errorf("outbound patch %d: context %v operation %v", i, p.GetMatch().GetContext(), p.GetPatch().GetOperation())
		}
		// A listener shared by several hosts is Istio's for the first one.
		cluster := p.GetPatch().GetValue().GetFields()["typedConfig"].GetStructValue().GetFields()["cluster"].GetStringValue()
		if cluster != "outbound|9000||a.example" {
			t.Errorf("outbound cluster = %q", cluster)
		}
	}
	if in.Namespace != "ns" || in.Spec.GetWorkloadSelector().GetLabels()["app"] != "s" {
		t.Errorf("inbound: namespace %q selector %v", in.Namespace, in.Spec.GetWorkloadSelector())
	}
	m := in.Spec.ConfigPatches[0].GetMatch()
	if m.GetContext() != networking.EnvoyFilter_SIDECAR_INBOUND || m.GetListener().GetName() != "virtualInbound" ||
		m.GetListener().GetFilterChain().GetDestinationPort() != 9001 || m.GetListener().GetFilterChain().GetFilter().GetName() != TCPProxyFilter {
		t.Errorf("inbound match = %v", m)
	}
}

// The outbound filter of a service only some namespaces see is in each of them,
// and never in the root namespace, where it would reach every sidecar.
func TestListenerFiltersOfAServiceSomeNamespacesSee(t *testing.T) {
	svc := &model.Service{
		Name: "s", Namespace: "ns", Hosts: []string{"a.example"}, Addresses: []string{"10.0.0.1"},
		WorkloadSelector: map[string]string{"app": "s"}, ExportTo: []string{"ns", "other", "root"},
	}
	port := &model.Port{Number: 9000, TargetPort: 9001, Protocol: model.ZooKeeper}
	efs, err := ListenerFilters(&generator.Context{RootNamespace: "root"}, svc, port, InsertBeforeTCPProxy, tcpFilter)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ef := range efs {
		got = append(got, ef.Key())
	}
	want := []string{"ns/aeraki-outbound-a.example-9000", "other/aeraki-outbound-a.example-9000", "ns/aeraki-inbound-a.example-9000"}
	if !slices.Equal(got, want) {
		t.Errorf("EnvoyFilters %v, want %v", got, want)
	}
}

func TestListenerFiltersErrors(t *testing.T) {
	port := &model.Port{Number: 9000, TargetPort: 9000, Protocol: model.Dubbo}
	cases := map[string]struct {
		svc  *model.Service
		port *model.Port
		want string
	}{
		"no hosts":         {&model.Service{Addresses: []string{"10.0.0.1"}}, port, "no hosts"},
		"nothing to patch": {&model.Service{Hosts: []string{"a"}}, port, "neither an address"},
		"cidr":             {&model.Service{Hosts: []string{"a"}, Addresses: []string{"10.0.0.0/24"}}, port, "CIDR"},
		"named target port": {&model.Service{Hosts: []string{"a"}, WorkloadSelector: map[string]string{"a": "b"}},
			&model.Port{Number: 9000, Name: "tcp-dubbo"}, "numeric targetPort"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			efs, err := ListenerFilters(&generator.Context{}, c.svc, c.port, ReplaceTCPProxy, tcpFilter)
			if err == nil || !strings.Contains(err.Error(), c.want) || efs != nil {
				t.Fatalf("got %v, %v; want error containing %q and no filters", efs, err, c.want)
			}
		})
	}
}

// TestBuilderDirections: a builder patches only the directions asked for, and later
// patches of a direction join the EnvoyFilter its listener patches made.
func TestBuilderDirections(t *testing.T) {
	svc := &model.Service{
		Name: "s", Namespace: "ns", Hosts: []string{"a.example"},
		Addresses:        []string{"10.0.0.1"},
		WorkloadSelector: map[string]string{"app": "s"},
	}
	port := &model.Port{Number: 9000, TargetPort: 9001, Protocol: model.Dubbo}
	b, err := NewBuilder(&generator.Context{RootNamespace: "root"}, svc, port)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ListenerFilter(ReplaceTCPProxy, tcpFilter, Outbound); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(Outbound, b.Filters()[0].Spec.ConfigPatches[0]); err != nil {
		t.Fatal(err)
	}
	efs := b.Filters()
	if len(efs) != 1 || efs[0].Key() != "root/"+ObjectName(Outbound, "a.example", 9000) || len(efs[0].Spec.GetConfigPatches()) != 2 {
		t.Fatalf("got %v, want the outbound EnvoyFilter only, with both patches", efs)
	}
	// Inbound only, for a service without addresses.
	b, err = NewBuilder(&generator.Context{RootNamespace: "root"}, &model.Service{Name: "s", Namespace: "ns", Hosts: []string{"a.example"}, WorkloadSelector: map[string]string{"app": "s"}}, port)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ListenerFilter(ReplaceTCPProxy, tcpFilter, Outbound); !errors.Is(err, ErrNoListener) {
		t.Errorf("outbound only, without addresses: %v, want ErrNoListener", err)
	}
	if err := b.ListenerFilter(ReplaceTCPProxy, tcpFilter, Inbound); err != nil || len(b.Filters()) != 1 || b.Filters()[0].Namespace != "ns" {
		t.Errorf("inbound only: %v, %v", b.Filters(), err)
	}
}

// TestForProxiesWithMetadata: with the option, every patch of the builder, listener
// patches of both directions and patches added later, matches only proxies with
// the metadata; the caller's patches are left as they were, and a patch that
// matches other proxies is refused.
func TestForProxiesWithMetadata(t *testing.T) {
	svc := &model.Service{
		Name: "s", Namespace: "ns", Hosts: []string{"a.example"},
		Addresses:        []string{"10.0.0.1", "10.0.0.2"},
		WorkloadSelector: map[string]string{"app": "s"},
	}
	port := &model.Port{Number: 9000, TargetPort: 9001, Protocol: model.ZooKeeper}
	metadata := map[string]string{"BUILD": "special"}
	b, err := NewBuilder(&generator.Context{RootNamespace: "root"}, svc, port, ForProxiesWithMetadata(metadata))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ListenerFilter(InsertBeforeTCPProxy, tcpFilter, Outbound, Inbound); err != nil {
		t.Fatal(err)
	}
	bare := &networking.EnvoyFilter_EnvoyConfigObjectPatch{ApplyTo: networking.EnvoyFilter_CLUSTER}
	if err := b.Add(Inbound, bare); err != nil {
		t.Fatal(err)
	}
	if bare.Match != nil {
		t.Errorf("Add changed the caller's patch: %v", bare)
	}
	metadata["BUILD"] = "changed" // the builder keeps its own copy
	want := &networking.EnvoyFilter_ProxyMatch{Metadata: map[string]string{"BUILD": "special"}}
	n := 0
	for _, ef := range b.Filters() {
		for i, p := range ef.Spec.GetConfigPatches() {
			n++
			if got := p.GetMatch().GetProxy(); !proto.Equal(got, want) {
				t.Errorf("%s patch %d: proxy match %v, want %v", ef.Key(), i, got, want)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d patches, want two outbound, two inbound", n)
	}

	other := &networking.EnvoyFilter_EnvoyConfigObjectPatch{Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{
		Proxy: &networking.EnvoyFilter_ProxyMatch{Metadata: map[string]string{"BUILD": "stock"}},
	}}
	if err := b.Add(Outbound, other); err == nil {
		t.Error("a patch for other proxies was accepted")
	}

	// Without the option, or with no metadata, no patch has a proxy match.
	for _, opts := range [][]Option{nil, {ForProxiesWithMetadata(nil)}} {
		efs, err := ListenerFilters(&generator.Context{RootNamespace: "root"}, svc, port, InsertBeforeTCPProxy, tcpFilter, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, ef := range efs {
			for i, p := range ef.Spec.GetConfigPatches() {
				if p.GetMatch().GetProxy() != nil {
					t.Errorf("options %d: %s patch %d has a proxy match %v", len(opts), ef.Key(), i, p.GetMatch().GetProxy())
				}
			}
		}
	}
}

func TestValidateFilterValue(t *testing.T) {
	good, err := tcpFilter(&Listener{StatPrefix: "s", Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	value, err := FilterValue(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateFilterValue(value); err != nil {
		t.Fatalf("valid filter rejected: %v", err)
	}
	bad := func(mutate func(tc map[string]any)) *structpb.Struct {
		tc := map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "s", "cluster": "c"}
		mutate(tc)
		s, err := structpb.NewStruct(map[string]any{"name": TCPProxyFilter, "typed_config": tc})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, value := range map[string]*structpb.Struct{
		"unknown field":        bad(func(tc map[string]any) { tc["no_such_field"] = 1 }),
		"unknown type":         bad(func(tc map[string]any) { tc["@type"] = "type.googleapis.com/no.such.Type" }),
		"required field empty": bad(func(tc map[string]any) { tc["stat_prefix"] = "" }),
	} {
		if err := ValidateFilterValue(value); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// FilterValue checks the same before it writes a value.
	for name, f := range map[string]*Filter{
		"no name":              NetworkFilter("", good.Config),
		"no config":            NetworkFilter(TCPProxyFilter, nil),
		"required field empty": NetworkFilter(TCPProxyFilter, &tcp.TcpProxy{ClusterSpecifier: &tcp.TcpProxy_Cluster{Cluster: "c"}}),
	} {
		if _, err := FilterValue(f); !errors.Is(err, generator.ErrInvalidFilter) {
			t.Errorf("%s: FilterValue error %v, want ErrInvalidFilter", name, err)
		}
	}
}

func TestStatName(t *testing.T) {
	cases := []struct {
		d    Direction
		port uint32
		host string
		want string
	}{
		{Outbound, 2181, "ZK.Infra.svc.cluster.local", "outbound_2181_zk_infra_svc_cluster_local"},
		{Inbound, 12181, "zk.infra.svc.cluster.local", "inbound_12181_zk_infra_svc_cluster_local"},
		{Outbound, 2181, "*.zk-ensemble.example", "outbound_2181_wildcard_zk_ensemble_example"},
	}
	for _, c := range cases {
		if got := statName(c.d, c.port, c.host); got != c.want {
			t.Errorf("statName(%s, %d, %q) = %q, want %q", c.d, c.port, c.host, got, c.want)
		}
	}
}

func TestObjectName(t *testing.T) {
	cases := map[string]string{
		"reviews.default.svc.cluster.local": "aeraki-outbound-reviews.default.svc.cluster.local-20880",
		// Not a name as they are: the readable part, then a hash of the exact host.
		"*.example.com":      "aeraki-outbound-wildcard.example.com-47287a8f16-20880",
		"Upper_Case.Example": "aeraki-outbound-upper-case.example-e92001e80f-20880",
	}
	for host, want := range cases {
		if got := ObjectName(Outbound, host, 20880); got != want {
			t.Errorf("ObjectName(%q) = %q, want %q", host, got, want)
		}
	}
	// Hosts that differ only in case or in characters a name cannot hold never share
	// a name: one service cannot take another's EnvoyFilter.
	seen := map[string]string{}
	for _, host := range []string{"orders.shop.example", "Orders.shop.example", "ORDERS.shop.example", "orders_shop.example",
		"orders-shop.example", "*.shop.example", "wildcard.shop.example", "orders.shop.example."} {
		name := ObjectName(Outbound, host, 20880)
		if other, taken := seen[name]; taken {
			t.Errorf("hosts %q and %q share the EnvoyFilter name %s", other, host, name)
		}
		seen[name] = host
	}
	long := strings.Repeat("a", 300) + ".example"
	n1, n2 := ObjectName(Inbound, long, 1), ObjectName(Inbound, long+"x", 1)
	if len(n1) > 253 || n1 == n2 {
		t.Errorf("long hosts: %d chars, distinct=%v", len(n1), n1 != n2)
	}
}
