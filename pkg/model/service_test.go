package model_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
)

const bindings = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: app}
spec:
  hosts: [svc.app.svc.cluster.local, alias.example.com]
  addresses: [10.0.0.2, 10.0.0.1/32, 0.0.0.0]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: plain, namespace: app}
spec:
  hosts: [plain.app.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
`

// build is model.BuildServices of a snapshot whose reads do not fail.
func build(t *testing.T, snap *model.Snapshot) []*model.Service {
	t.Helper()
	services, err := model.BuildServices(snap)
	if err != nil {
		t.Fatal(err)
	}
	return services
}

// doc is an Istio document with one host field in its spec.
func doc(kind, ns, name, field, host string) string {
	return "---\napiVersion: networking.istio.io/v1\nkind: " + kind + "\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec: {" + field + ": " + host + "}\n"
}

func TestBuildServicesBindsByHost(t *testing.T) {
	in := bindings +
		doc("VirtualService", "app", "short-same-ns", "hosts", "[svc]") +
		doc("VirtualService", "other", "short-other-ns", "hosts", "[svc]") + // other.svc...: not ours
		doc("VirtualService", "other", "fqdn-other-ns", "hosts", "[svc.app.svc.cluster.local]") +
		doc("VirtualService", "other", "second-host", "hosts", "[alias.example.com]") +
		doc("VirtualService", "other", "wildcard", "hosts", `["*.example.com"]`) +
		doc("VirtualService", "other", "unrelated", "hosts", "[nope.example.com]") +
		doc("DestinationRule", "app", "short-dr", "host", "svc") +
		doc("DestinationRule", "other", "short-dr-other-ns", "host", "svc")
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(in), "in"); len(errs) > 0 {
		t.Fatal(errs)
	}
	services := build(t, objs.Snapshot("cluster.local"))
	if len(services) != 1 {
		t.Fatalf("got %d services, want only the one with a Dubbo port", len(services))
	}
	svc := services[0]
	names := func(n int, name func(int) string) []string {
		var out []string
		for i := range n {
			out = append(out, name(i))
		}
		return out
	}
	vs := names(len(svc.VirtualServices), func(i int) string { return svc.VirtualServices[i].Namespace + "/" + svc.VirtualServices[i].Name })
	// In Istio's order: exact hosts first (by name, all of one age), then the wildcard.
	if diff := cmp.Diff([]string{"other/fqdn-other-ns", "other/second-host", "app/short-same-ns", "other/wildcard"}, vs); diff != "" {
		t.Errorf("VirtualServices (-want +got):\n%s", diff)
	}
	dr := names(len(svc.DestinationRules), func(i int) string { return svc.DestinationRules[i].Namespace + "/" + svc.DestinationRules[i].Name })
	if diff := cmp.Diff([]string{"app/short-dr"}, dr); diff != "" {
		t.Errorf("DestinationRules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"alias.example.com", "svc.app.svc.cluster.local"}, svc.Hosts); diff != "" {
		t.Errorf("hosts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.2"}, svc.Addresses); diff != "" {
		t.Errorf("addresses: a /32 is an IP, 0.0.0.0 no listener (-want +got):\n%s", diff)
	}
}

// A ServiceEntry's annotations come from the apiserver when it has the object:
// istiod does not push a change of annotations alone. The service's version follows
// the annotations it got.
func TestBuildServicesTakesServiceEntryAnnotationsFromTheAPIServer(t *testing.T) {
	snap := fixture.Snapshot(fixture.Dubbo, 2)
	before := build(t, snap)
	fresh := map[string]string{"interface": "org.example.Renamed"}
	snap.ServiceEntryState = func(ns, name string) (*model.ServiceEntryState, error) {
		if ns == fixture.Namespace && name == "dubbo-1" {
			return &model.ServiceEntryState{Annotations: fresh}, nil
		}
		return nil, nil
	}
	after := build(t, snap)
	if got := after[0].Annotations["interface"]; got != "org.example.Service0" {
		t.Errorf("dubbo-0 (not in the apiserver's cache): interface %q, want istiod's", got)
	}
	if got := after[1].Annotations["interface"]; got != "org.example.Renamed" {
		t.Errorf("dubbo-1: interface %q, want the apiserver's", got)
	}
	if before[0].Version != after[0].Version || before[1].Version == after[1].Version {
		t.Errorf("versions: dubbo-0 %s -> %s (want same), dubbo-1 %s -> %s (want changed)",
			before[0].Version, after[0].Version, before[1].Version, after[1].Version)
	}
}

// A failed read of the snapshot fails the build, naming the object: services built
// from a partial view would drop what the user still wants. An object the reader
// does not have is no error.
func TestBuildServicesFailsOnAFailedRead(t *testing.T) {
	errRead := errors.New("apiserver unavailable")
	snap := fixture.Snapshot(fixture.Dubbo, 2)
	snap.ServiceEntryState = func(ns, name string) (*model.ServiceEntryState, error) {
		if name == "dubbo-1" {
			return nil, errRead
		}
		return nil, nil
	}
	services, err := model.BuildServices(snap)
	if !errors.Is(err, errRead) || !strings.Contains(err.Error(), "ServiceEntry "+fixture.Namespace+"/dubbo-1") || services != nil {
		t.Errorf("failed annotations read: %v, %v; want the read's error naming the ServiceEntry and no services", services, err)
	}

	snap = fixture.Snapshot(fixture.Dubbo, 1)
	snap.ServiceEntries[0] = fixture.Object(model.SyntheticPrefix+"dubbo-0", &networking.ServiceEntry{
		Hosts: []string{"dubbo-0." + fixture.Namespace + ".svc.cluster.local"}, Addresses: []string{"10.96.0.9"},
		Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
	}, map[string]string{"interface": "org.example.Dubbo0"})
	snap.KubeService = func(ns, name string) (*model.KubeService, error) {
		return nil, nil
	}
	if services := build(t, snap); len(services) != 1 {
		t.Fatalf("Kubernetes Service not found: %d services, want the ServiceEntry's", len(services))
	}
	snap.KubeService = func(ns, name string) (*model.KubeService, error) {
		return nil, errRead
	}
	services, err = model.BuildServices(snap)
	if !errors.Is(err, errRead) || !strings.Contains(err.Error(), "Service "+fixture.Namespace+"/dubbo-0") || services != nil {
		t.Errorf("failed Service read: %v, %v; want the read's error naming the Service and no services", services, err)
	}
}

// A ServiceEntry only named like istiod's view of a Kubernetes Service borrows
// nothing from that Service: not its annotations, not its target ports, not its kind
// in messages. The one istiod derives does.
func TestOnlyIstiodsSyntheticEntriesBorrowFromTheService(t *testing.T) {
	kube := &model.KubeService{Annotations: map[string]string{"interface": "org.example.Borrowed"}, TargetPorts: map[uint32]uint32{20880: 20999}}
	entry := func(host string) *model.Snapshot {
		return &model.Snapshot{
			DomainSuffix: "cluster.local",
			ServiceEntries: []model.Object{{Name: model.SyntheticPrefix + "orders", Namespace: "shop", Spec: &networking.ServiceEntry{
				Hosts: []string{host}, Addresses: []string{"240.240.0.1"},
				Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			}}},
			KubeService: func(ns, name string) (*model.KubeService, error) {
				if ns+"/"+name != "shop/orders" {
					t.Errorf("looked up Service %s/%s", ns, name)
				}
				return kube, nil
			},
		}
	}
	named := build(t, entry("payments.example"))[0]
	if named.Synthetic || named.Kind() != "ServiceEntry" || named.Annotations["interface"] != "" || named.Ports[0].TargetPort != 20880 {
		t.Errorf("a ServiceEntry named %s borrowed from Service shop/orders: %+v, port %+v", named.Name, named, named.Ports[0])
	}
	derived := build(t, entry("orders.shop.svc.cluster.local"))[0]
	if !derived.Synthetic || derived.Kind() != "Service" || derived.ObjectName() != "orders" ||
		derived.Annotations["interface"] != "org.example.Borrowed" || derived.Ports[0].TargetPort != 20999 {
		t.Errorf("istiod's entry for Service shop/orders: %+v, port %+v", derived, derived.Ports[0])
	}
}

// The VirtualService in effect for a service is the one Istio's sidecars would use:
// an exact host before a wildcard, a narrower wildcard before a broader one, the
// oldest, then by name, then by namespace; one exported to some namespaces only is
// not applied to the whole mesh.
func TestVirtualServicePrecedence(t *testing.T) {
	at := func(day int) time.Time { return time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC) }
	vs := func(ns, name string, created time.Time, hosts []string, exportTo ...string) model.Object {
		return model.Object{Name: name, Namespace: ns, Created: created, ResourceVersion: "1",
			Spec: &networking.VirtualService{Hosts: hosts, ExportTo: exportTo}}
	}
	se := model.Object{Name: "orders", Namespace: "shop", ResourceVersion: "1", Spec: &networking.ServiceEntry{
		Hosts: []string{"orders.shop.svc.cluster.local"}, Addresses: []string{"240.240.0.1"},
		Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
	}}
	for _, c := range []struct {
		name string
		vss  []model.Object
		want []string
	}{
		{
			name: "exact beats an older wildcard of another namespace",
			vss: []model.Object{
				vs("tenant", "all", at(1), []string{"*.svc.cluster.local"}),
				vs("shop", "orders", at(9), []string{"orders"}),
			},
			want: []string{"shop/orders", "tenant/all"},
		},
		{
			name: "narrower wildcard beats a broader one",
			vss: []model.Object{
				vs("a", "broad", at(1), []string{"*"}),
				vs("b", "narrow", at(5), []string{"*.shop.svc.cluster.local"}),
				vs("c", "middle", at(2), []string{"*.svc.cluster.local"}),
			},
			want: []string{"b/narrow", "c/middle", "a/broad"},
		},
		{
			name: "the older of two exact ones, whatever their namespaces and names",
			vss: []model.Object{
				vs("aaa", "aaa", at(9), []string{"orders.shop.svc.cluster.local"}),
				vs("zzz", "zzz", at(1), []string{"orders.shop.svc.cluster.local"}),
			},
			want: []string{"zzz/zzz", "aaa/aaa"},
		},
		{
			name: "of one age: by name, then by namespace",
			vss: []model.Object{
				vs("b", "x", at(1), []string{"orders.shop.svc.cluster.local"}),
				vs("a", "y", at(1), []string{"orders.shop.svc.cluster.local"}),
				vs("a", "x", at(1), []string{"orders.shop.svc.cluster.local"}),
			},
			want: []string{"a/x", "b/x", "a/y"},
		},
		{
			name: "exported to some namespaces only: not mesh-wide",
			vss: []model.Object{
				vs("tenant", "mine", at(1), []string{"*.svc.cluster.local"}, "."),
				vs("tenant", "theirs", at(1), []string{"orders.shop.svc.cluster.local"}, "tenant", "shop"),
				vs("shop", "everyone", at(9), []string{"orders"}, "*"),
			},
			want: []string{"shop/everyone"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: []model.Object{se}, VirtualServices: c.vss}
			svc := build(t, snap)[0]
			var got []string
			for _, v := range svc.VirtualServices {
				got = append(got, v.Namespace+"/"+v.Name)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("VirtualServices in order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExportNamespaces(t *testing.T) {
	for _, c := range []struct {
		exportTo []string
		want     []string
	}{
		{nil, nil},
		{[]string{"*"}, nil},
		{[]string{".", "*"}, nil},
		{[]string{"."}, []string{"shop"}},
		{[]string{"billing", ".", "billing"}, []string{"billing", "shop"}},
		{[]string{"~"}, []string{}},
	} {
		got := exportNamespacesOf(t, c.exportTo)
		if !cmp.Equal(c.want, got) || (c.want == nil) != (got == nil) {
			t.Errorf("exportTo %q: %#v, want %#v", c.exportTo, got, c.want)
		}
	}
}

// exportNamespacesOf builds the service of a ServiceEntry in namespace shop with
// exportTo and returns its ExportTo.
func exportNamespacesOf(t *testing.T, exportTo []string) []string {
	t.Helper()
	snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: []model.Object{{Name: "s", Namespace: "shop", Spec: &networking.ServiceEntry{
		Hosts: []string{"s.shop.example"}, Addresses: []string{"240.240.0.1"}, ExportTo: exportTo,
		Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
	}}}}
	return build(t, snap)[0].ExportTo
}

// The DestinationRules of a service are those Istio's sidecars use: the service's
// namespace's, else the root namespace's, exported to every namespace; a third
// namespace's never.
func TestDestinationRulesAsIstioChooses(t *testing.T) {
	dr := func(ns, name string, exportTo ...string) model.Object {
		return model.Object{Name: name, Namespace: ns, ResourceVersion: "1", Spec: &networking.DestinationRule{Host: "orders.shop.svc.cluster.local", ExportTo: exportTo}}
	}
	se := model.Object{Name: "orders", Namespace: "shop", ResourceVersion: "1", Spec: &networking.ServiceEntry{
		Hosts: []string{"orders.shop.svc.cluster.local"}, Addresses: []string{"240.240.0.1"},
		Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
	}}
	for _, c := range []struct {
		name string
		drs  []model.Object
		want []string
	}{
		{"the service's namespace first", []model.Object{dr("istio-system", "mesh"), dr("shop", "own"), dr("tenant", "other")}, []string{"shop/own"}},
		{"else the root namespace", []model.Object{dr("istio-system", "mesh"), dr("tenant", "other")}, []string{"istio-system/mesh"}},
		{"never a third namespace", []model.Object{dr("tenant", "other")}, nil},
		{"exported to some namespaces only: not mesh-wide", []model.Object{dr("shop", "private", "."), dr("istio-system", "mesh")}, []string{"istio-system/mesh"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap := &model.Snapshot{DomainSuffix: "cluster.local", RootNamespace: "istio-system", ServiceEntries: []model.Object{se}, DestinationRules: c.drs}
			var got []string
			for _, d := range build(t, snap)[0].DestinationRules {
				got = append(got, d.Namespace+"/"+d.Name)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("DestinationRules (-want +got):\n%s", diff)
			}
		})
	}
}

// Each namespace whose sidecars Istio gives other routing for a service than every
// namespace gets a view with that routing, and no other namespace does.
func TestViews(t *testing.T) {
	at := func(day int) time.Time { return time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC) }
	vs := func(ns, name string, day int, host string, exportTo ...string) model.Object {
		return model.Object{Name: name, Namespace: ns, Created: at(day), ResourceVersion: "1",
			Spec: &networking.VirtualService{Hosts: []string{host}, ExportTo: exportTo}}
	}
	dr := func(ns, name string, exportTo ...string) model.Object {
		return model.Object{Name: name, Namespace: ns, ResourceVersion: "1", Spec: &networking.DestinationRule{Host: "orders.shop.svc.cluster.local", ExportTo: exportTo}}
	}
	se := func(exportTo ...string) model.Object {
		return model.Object{Name: "orders", Namespace: "shop", ResourceVersion: "1", Spec: &networking.ServiceEntry{
			Hosts: []string{"orders.shop.svc.cluster.local"}, Addresses: []string{"240.240.0.1"}, ExportTo: exportTo,
			Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
		}}
	}
	const host = "orders.shop.svc.cluster.local"
	for _, c := range []struct {
		name     string
		se       model.Object
		vss, drs []model.Object
		defaults model.ExportDefaults
		// want: namespace -> its first VirtualService and its DestinationRules.
		want map[string]string
	}{
		{
			name: "a namespace's own VirtualService, older than the mesh's",
			se:   se(),
			vss:  []model.Object{vs("shop", "mesh", 5, host), vs("canary", "own", 1, host, "."), vs("late", "own", 9, host, ".")},
			want: map[string]string{"canary": "canary/own"},
		},
		{
			name: "exported to a list of namespaces",
			se:   se(),
			vss:  []model.Object{vs("team", "pair", 1, host, "a", "b")},
			want: map[string]string{"a": "team/pair", "b": "team/pair"},
		},
		{
			name: "never the root namespace, whose filters reach every sidecar",
			se:   se(),
			vss:  []model.Object{vs("istio-system", "own", 1, host, ".")},
			want: map[string]string{},
		},
		{
			name: "hidden everywhere",
			se:   se(),
			vss:  []model.Object{vs("team", "none", 1, host, "~")},
			want: map[string]string{},
		},
		{
			name: "only where the service is seen",
			se:   se("shop", "a"),
			vss:  []model.Object{vs("team", "pair", 1, host, "a", "b")},
			want: map[string]string{"a": "team/pair"},
		},
		{
			name: "a client namespace's own DestinationRule comes first",
			se:   se(),
			drs:  []model.Object{dr("shop", "public"), dr("tenant", "own", "."), dr("shop", "private", ".")},
			want: map[string]string{"tenant": "- tenant/own", "shop": "- shop/private shop/public"},
		},
		{
			name: "the service namespace's rule exported to one namespace",
			se:   se(),
			drs:  []model.Object{dr("istio-system", "mesh"), dr("shop", "for-a", "a")},
			want: map[string]string{"a": "- shop/for-a"},
		},
		{
			name:     "the mesh's default export",
			se:       se(),
			vss:      []model.Object{vs("shop", "mesh", 5, host, "*"), vs("canary", "own", 1, host)},
			defaults: model.ExportDefaults{VirtualService: []string{"."}},
			want:     map[string]string{"canary": "canary/own"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap := &model.Snapshot{DomainSuffix: "cluster.local", RootNamespace: "istio-system", ExportDefaults: c.defaults,
				ServiceEntries: []model.Object{c.se}, VirtualServices: c.vss, DestinationRules: c.drs}
			got := map[string]string{}
			for _, v := range build(t, snap)[0].Views {
				s := "-"
				if len(v.VirtualServices) > 0 {
					s = v.VirtualServices[0].Namespace + "/" + v.VirtualServices[0].Name
				}
				for _, d := range v.DestinationRules {
					s += " " + d.Namespace + "/" + d.Name
				}
				got[v.Namespace] = s
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("views (-want +got):\n%s", diff)
			}
		})
	}
}

// The mesh's default exportTo applies to objects without one; of its defaults for
// DestinationRules Istio honours only "." and "*".
func TestExportDefaults(t *testing.T) {
	snap := &model.Snapshot{DomainSuffix: "cluster.local", RootNamespace: "istio-system",
		ExportDefaults: model.ExportDefaults{ServiceEntry: []string{"."}, DestinationRule: []string{"other"}},
		ServiceEntries: []model.Object{{Name: "orders", Namespace: "shop", ResourceVersion: "1", Spec: &networking.ServiceEntry{
			Hosts: []string{"orders.shop.svc.cluster.local"}, Addresses: []string{"240.240.0.1"},
			Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
		}}},
		DestinationRules: []model.Object{{Name: "orders", Namespace: "shop", ResourceVersion: "1", Spec: &networking.DestinationRule{Host: "orders"}}},
	}
	svc := build(t, snap)[0]
	if !cmp.Equal(svc.ExportTo, []string{"shop"}) {
		t.Errorf("ServiceEntry without exportTo, mesh default \".\": ExportTo %v, want [shop]", svc.ExportTo)
	}
	if len(svc.DestinationRules) != 1 {
		t.Errorf("DestinationRule without exportTo, mesh default [other] (not honoured): %d rules for every namespace, want 1", len(svc.DestinationRules))
	}
}

// A ServiceEntry without a workloadSelector takes upstream Aeraki's workloadSelector
// annotation; one with a selector, or a Kubernetes Service, does not.
func TestWorkloadSelectorAnnotation(t *testing.T) {
	entry := func(name string, annotation string, selector map[string]string) model.Object {
		spec := &networking.ServiceEntry{
			Hosts: []string{name + ".shop.example"}, Addresses: []string{"240.240.0.1"},
			Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
		}
		if selector != nil {
			spec.WorkloadSelector = &networking.WorkloadSelector{Labels: selector}
		}
		return model.Object{Name: name, Namespace: "shop", ResourceVersion: "1", Annotations: map[string]string{model.WorkloadSelectorAnnotation: annotation}, Spec: spec}
	}
	snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: []model.Object{
		entry("app", "orders", nil),
		entry("pair", "team: shop", nil),
		entry("odd", "a:b:c", nil),
		entry("spec", "orders", map[string]string{"app": "billing"}),
	}}
	got := map[string]map[string]string{}
	for _, svc := range build(t, snap) {
		got[svc.Name] = svc.WorkloadSelector
	}
	want := map[string]map[string]string{
		"app":  {"app": "orders"},
		"pair": {"team": "shop"},
		"odd":  nil,
		"spec": {"app": "billing"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("workload selectors (-want +got):\n%s", diff)
	}
}

// TestAllocatedAddresses: the addresses of a ServiceEntry's status are its clients'
// listeners exactly where istiod's conversion uses them: no addresses of its own,
// not resolved NONE, not opted out; per host of the spec, its last IPv4 and IPv6
// address. They are part of the service's version: istiod sends no status, so
// nothing else changes when they do.
func TestAllocatedAddresses(t *testing.T) {
	const host = "greeter.example"
	status := []model.HostAddress{
		{Host: host, Address: "240.240.0.1"},
		{Host: host, Address: "240.240.0.2"}, // istiod keeps the last of a family
		{Host: host, Address: "2001:2::2"},
		{Host: "gone.example", Address: "240.240.0.3"}, // not a host of the spec
		{Host: host, Address: "not-an-ip"},
	}
	want := []model.HostAddress{{Host: host, Address: "240.240.0.2"}, {Host: host, Address: "2001:2::2"}}
	for _, c := range []struct {
		name       string
		resolution networking.ServiceEntry_Resolution
		addresses  []string
		labels     map[string]string
		want       []model.HostAddress
	}{
		{name: "DNS", resolution: networking.ServiceEntry_DNS, want: want},
		{name: "STATIC", resolution: networking.ServiceEntry_STATIC, want: want},
		{name: "NONE", resolution: networking.ServiceEntry_NONE},
		{name: "addresses of its own", resolution: networking.ServiceEntry_DNS, addresses: []string{"10.0.0.1"}},
		{name: "opted out", resolution: networking.ServiceEntry_DNS, labels: map[string]string{model.AutoallocateLabel: "False"}},
		{name: "opted in", resolution: networking.ServiceEntry_DNS, labels: map[string]string{model.AutoallocateLabel: "true"}, want: want},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap := &model.Snapshot{ServiceEntries: []model.Object{fixture.Object("greeter", &networking.ServiceEntry{
				Hosts: []string{host}, Addresses: c.addresses, Resolution: c.resolution,
				Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			}, nil)}}
			before := build(t, snap)[0]
			snap.ServiceEntryState = func(ns, name string) (*model.ServiceEntryState, error) {
				return &model.ServiceEntryState{Labels: c.labels, Addresses: status}, nil
			}
			svc := build(t, snap)[0]
			if diff := cmp.Diff(c.want, svc.Allocated); diff != "" {
				t.Errorf("allocated addresses (-want +got):\n%s", diff)
			}
			if (before.Version != svc.Version) != (len(c.want) > 0) {
				t.Errorf("version %s -> %s: want a change exactly when addresses were allocated", before.Version, svc.Version)
			}
		})
	}
}
