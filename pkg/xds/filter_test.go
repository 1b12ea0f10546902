package xds

import (
	"slices"
	"sync"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	istiomodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"
	"istio.io/istio/pkg/config/schema/gvk"

	"aeraki.io/aeraki/pkg/model"
)

func se(name, ns string, hosts []string, portNames ...string) *config.Config {
	spec := &networking.ServiceEntry{Hosts: hosts}
	for i, p := range portNames {
		spec.Ports = append(spec.Ports, &networking.ServicePort{Number: uint32(20880 + i), Name: p, Protocol: "TCP"})
	}
	return &config.Config{Meta: config.Meta{GroupVersionKind: gvk.ServiceEntry, Name: name, Namespace: ns}, Spec: spec}
}

func vs(name, ns string, hosts ...string) *config.Config {
	return &config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.VirtualService, Name: name, Namespace: ns},
		Spec: &networking.VirtualService{Hosts: hosts},
	}
}

func dr(ns, h string) *config.Config {
	return &config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.DestinationRule, Name: "d", Namespace: ns},
		Spec: &networking.DestinationRule{Host: h},
	}
}

// with returns a copy of c changed by f, for before/after pairs.
func with(c *config.Config, f func(*config.Config)) *config.Config {
	out := c.DeepCopy()
	f(&out)
	return &out
}

func TestRelevant(t *testing.T) {
	const suffix = "cluster.local"
	dubbo := se("a", "default", []string{"a.default.svc.cluster.local"}, "tcp-dubbo")
	plain := se("p", "default", []string{"p.example.com"}, "http", "tcp")
	vsA := vs("r", "default", "a") // short host, resolved in the VirtualService's namespace
	// The ServiceEntry hosts the index knows: a.default.svc.cluster.local and
	// *.wild.example.com (both with supported ports).
	idx := newHostIndex()
	idx.update(change{New: dubbo})
	idx.update(change{New: se("w", "default", []string{"*.wild.example.com"}, "tcp-thrift")})

	cases := []struct {
		name string
		c    change
		want bool
	}{
		{"SE add with tcp-dubbo", change{New: dubbo}, true},
		{"SE add with suffixed port name", change{New: se("b", "ns", []string{"b.ns"}, "http", "TCP-Redis-6379")}, true},
		{"SE add without supported port", change{New: plain}, false},
		{"SE delete with tcp-dubbo", change{Old: dubbo}, true},
		{"SE delete without supported port", change{Old: plain}, false},
		{"SE port renamed away from tcp-dubbo", change{Old: dubbo, New: se("a", "default", []string{"a.default.svc.cluster.local"}, "tcp")}, true},
		{"SE port renamed to tcp-zookeeper", change{Old: plain, New: se("p", "default", []string{"p.example.com"}, "http", "tcp-zookeeper")}, true},
		{"SE plain port renamed plain", change{Old: plain, New: se("p", "default", []string{"p.example.com"}, "http", "grpc")}, false},
		{"SE update equal spec", change{Old: dubbo, New: with(dubbo, func(c *config.Config) { c.ResourceVersion = "2" })}, false},
		{"SE update equal spec, empty vs nil annotations", change{Old: dubbo, New: with(dubbo, func(c *config.Config) { c.Annotations = map[string]string{} })}, false},
		{"SE update annotation only", change{Old: dubbo, New: with(dubbo, func(c *config.Config) { c.Annotations = map[string]string{"x": "y"} })}, true},
		{"SE update label only", change{Old: dubbo, New: with(dubbo, func(c *config.Config) { c.Labels = map[string]string{"x": "y"} })}, true},
		{"SE update spec change", change{Old: dubbo, New: with(dubbo, func(c *config.Config) {
			c.Spec.(*networking.ServiceEntry).Addresses = []string{"240.0.0.1"}
		})}, true},
		{"SE plain update annotation only", change{Old: plain, New: with(plain, func(c *config.Config) { c.Annotations = map[string]string{"x": "y"} })}, false},

		{"VS add short host in namespace", change{New: vsA}, true},
		{"VS add short host in other namespace", change{New: vs("r", "other", "a")}, false},
		{"VS add FQDN host", change{New: vs("r", "other", "a.default.svc.cluster.local")}, true},
		{"VS add unrelated host", change{New: vs("u", "default", "unrelated.example.com")}, false},
		{"VS add one related host of many", change{New: vs("m", "default", "x.example.com", "a")}, true},
		{"VS wildcard host matches SE host", change{New: vs("w", "default", "*.svc.cluster.local")}, true},
		{"VS star host", change{New: vs("s", "default", "*")}, true},
		{"VS exact host matches SE wildcard", change{New: vs("e", "default", "api.wild.example.com")}, true},
		{"VS wildcard host unrelated", change{New: vs("w", "default", "*.other.example.com")}, false},
		{"VS host moved away", change{Old: vsA, New: vs("r", "default", "unrelated.example.com")}, true},
		{"VS host moved in", change{Old: vs("r", "default", "unrelated.example.com"), New: vsA}, true},
		{"VS delete related", change{Old: vsA}, true},
		{"VS delete unrelated", change{Old: vs("u", "default", "unrelated.example.com")}, false},
		{"VS update equal spec", change{Old: vsA, New: with(vsA, func(c *config.Config) { c.ResourceVersion = "9" })}, false},
		{"VS update route", change{Old: vsA, New: with(vsA, func(c *config.Config) {
			c.Spec.(*networking.VirtualService).Tcp = []*networking.TCPRoute{{}}
		})}, true},

		{"DR add short host", change{New: dr("default", "a")}, true},
		{"DR add FQDN host", change{New: dr("x", "a.default.svc.cluster.local")}, true},
		{"DR add unrelated host", change{New: dr("default", "b")}, false},
		{"DR delete related", change{Old: dr("default", "a")}, true},
		{"DR update equal spec", change{Old: dr("default", "a"), New: dr("default", "a")}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := relevant(tc.c, idx.contains, suffix); got != tc.want {
				t.Errorf("relevant = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHostIndex(t *testing.T) {
	idx := newHostIndex()
	one := se("one", "default", []string{"shared.example.com", "one.example.com", "one.example.com"}, "tcp-dubbo")
	two := se("two", "default", []string{"shared.example.com"}, "tcp-redis")
	plain := se("plain", "default", []string{"plain.example.com"}, "http")
	wild := se("wild", "default", []string{"*.wild.example.com"}, "tcp-kafka")

	check := func(step string, want map[string]bool) {
		t.Helper()
		for h, w := range want {
			if got := idx.contains(host.Name(h)); got != w {
				t.Errorf("%s: contains(%q) = %v, want %v", step, h, got, w)
			}
		}
	}

	idx.update(change{New: one})
	idx.update(change{New: two})
	idx.update(change{New: plain})
	idx.update(change{New: wild})
	check("all added", map[string]bool{
		"shared.example.com": true, "one.example.com": true, "plain.example.com": false,
		"a.wild.example.com": true, "*.example.com": true, "*.wild.example.com": true, "nothing.else": false,
	})

	idx.update(change{Old: one})
	check("one deleted", map[string]bool{"shared.example.com": true, "one.example.com": false})

	// Renamed away from tcp-redis: its hosts leave the index.
	idx.update(change{Old: two, New: se("two", "default", []string{"shared.example.com"}, "tcp")})
	check("two renamed away", map[string]bool{"shared.example.com": false})

	idx.update(change{Old: wild})
	check("wild deleted", map[string]bool{"a.wild.example.com": false, "*.example.com": false})
	if len(idx.counts) != 0 || len(idx.wildcards) != 0 {
		t.Errorf("index not empty after all deletes: %v %v", idx.counts, idx.wildcards)
	}
}

// TestWatcherHandler drives the store-event glue without a server: the host index
// follows ServiceEntry events, and VirtualService events are judged against it.
func TestWatcherHandler(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	w := NewWatcher(Options{Address: "unused:1"}, func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
	})
	seH, vsH, drH := w.handler(KindServiceEntry), w.handler(KindVirtualService), w.handler(KindDestinationRule)
	dubbo := se("a", "default", []string{"a.default.svc.cluster.local"}, "tcp-dubbo")
	route := vs("r", "default", "a")

	vsH(config.Config{}, *route, istiomodel.EventAdd) // before the ServiceEntry: unrelated
	seH(config.Config{}, *dubbo, istiomodel.EventAdd)
	vsH(*route, *with(route, func(c *config.Config) { c.Annotations = map[string]string{"v": "2"} }), istiomodel.EventUpdate)
	vsH(*route, *route, istiomodel.EventUpdate) // equal: dropped
	drH(config.Config{}, *dr("default", "a.default.svc.cluster.local"), istiomodel.EventAdd)
	seH(config.Config{}, *dubbo, istiomodel.EventDelete)
	vsH(config.Config{}, *route, istiomodel.EventDelete) // its ServiceEntry is gone: unrelated

	want := []Event{
		{KindServiceEntry, "default", "a"},
		{KindVirtualService, "default", "r"},
		{KindDestinationRule, "default", "d"},
		{KindServiceEntry, "default", "a"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
}

// The routing of a service istiod does not show the watcher, but the controller
// adds (a Kubernetes Service not exported to the root namespace), is reported too.
func TestWatcherHandlerHiddenServices(t *testing.T) {
	var got []Event
	w := NewWatcher(Options{Address: "unused:1"}, func(e Event) { got = append(got, e) })
	vsH := w.handler(KindVirtualService)
	route := vs("r", "shop", "cache")
	vsH(config.Config{}, *route, istiomodel.EventAdd) // unknown host: unrelated
	hidden := se("synthetic-cache", "shop", []string{"cache.shop.svc.cluster.local"}, "tcp-redis")
	w.SetHiddenServices([]model.Object{{Name: hidden.Name, Namespace: hidden.Namespace, Spec: hidden.Spec}})
	vsH(config.Config{}, *with(route, func(c *config.Config) { c.Name = "r2" }), istiomodel.EventAdd)
	w.SetHiddenServices(nil)
	vsH(config.Config{}, *with(route, func(c *config.Config) { c.Name = "r3" }), istiomodel.EventAdd)
	if want := []Event{{KindVirtualService, "shop", "r2"}}; !slices.Equal(got, want) {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
}

// A WorkloadEntry matters only with a ports map (before or after): its other fields
// change no filter.
func TestWatcherHandlerWorkloadEntries(t *testing.T) {
	var got []Event
	w := NewWatcher(Options{Address: "unused:1"}, func(e Event) { got = append(got, e) })
	weH := w.handler(KindWorkloadEntry)
	we := func(name string, ports map[string]uint32) *config.Config {
		return &config.Config{Meta: config.Meta{GroupVersionKind: gvk.WorkloadEntry, Name: name, Namespace: "shop"},
			Spec: &networking.WorkloadEntry{Address: "10.0.0.1", Labels: map[string]string{"app": "shop"}, Ports: ports}}
	}
	weH(config.Config{}, *we("plain", nil), istiomodel.EventAdd)
	weH(config.Config{}, *we("moved", map[string]uint32{"tcp-dubbo": 30880}), istiomodel.EventAdd)
	weH(*we("moved", map[string]uint32{"tcp-dubbo": 30880}), *we("moved", nil), istiomodel.EventUpdate)
	want := []Event{{KindWorkloadEntry, "shop", "moved"}, {KindWorkloadEntry, "shop", "moved"}}
	if !slices.Equal(got, want) {
		t.Errorf("events\n got %v\nwant %v", got, want)
	}
}
