package xds

import (
	"maps"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"

	"aeraki.io/aeraki/pkg/model"
)

// change is one store event in before/after form: Old is nil for an add, New is nil
// for a delete. Comparing both sides is what lets a port renamed away from tcp-dubbo,
// or a VirtualService moved to another host, still count.
type change struct {
	Old, New *config.Config
}

// relevant reports whether a change can matter to a generator. known tells whether a
// fully qualified host belongs to a ServiceEntry with a supported port. It is a pure
// function of its inputs so that the rules can be table-tested.
func relevant(c change, known func(host.Name) bool, domainSuffix string) bool {
	if c.Old != nil && c.New != nil && sameContent(c.Old, c.New) {
		// adsc rewrites objects whose resource version changed (and synthetic
		// ServiceEntries, which have none, on every push): nothing to do.
		return false
	}
	for _, cfg := range []*config.Config{c.Old, c.New} {
		if cfg == nil {
			continue
		}
		switch spec := cfg.Spec.(type) {
		case *networking.ServiceEntry:
			if model.HasSupportedPort(spec) {
				return true
			}
		case *networking.WorkloadEntry:
			// Only a ports map changes a filter (the inbound chains it adds).
			if len(spec.GetPorts()) > 0 {
				return true
			}
		case *networking.VirtualService, *networking.DestinationRule:
			for _, h := range model.HostsOf(model.Object{Namespace: cfg.Namespace, Spec: cfg.Spec}, domainSuffix) {
				if known(host.Name(h)) {
					return true
				}
			}
		}
	}
	return false
}

// sameContent compares what a generator can read of an object: spec, labels and
// annotations. Resource version and timestamps do not count.
func sameContent(a, b *config.Config) bool {
	pa, okA := a.Spec.(proto.Message)
	pb, okB := b.Spec.(proto.Message)
	if !okA || !okB {
		return false
	}
	return proto.Equal(pa, pb) && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations)
}

// hostIndex counts, per host, the ServiceEntries with a supported port that declare
// it, so that a VirtualService or DestinationRule event is judged without a store
// scan. Counts, because two ServiceEntries may declare the same host. It is not
// locked: the Watcher guards it.
type hostIndex struct {
	counts map[host.Name]int
	// wildcards holds the wildcard hosts of counts (e.g. *.example.com), the only
	// ones an exact VirtualService host can match without being equal.
	wildcards map[host.Name]int
}

func newHostIndex() *hostIndex {
	return &hostIndex{counts: map[host.Name]int{}, wildcards: map[host.Name]int{}}
}

// update applies a ServiceEntry change: the hosts of the old version go, those of
// the new one come. Versions without a supported port contribute nothing.
func (x *hostIndex) update(c change) {
	x.add(c.Old, -1)
	x.add(c.New, +1)
}

func (x *hostIndex) add(cfg *config.Config, delta int) {
	if cfg == nil {
		return
	}
	se, ok := cfg.Spec.(*networking.ServiceEntry)
	if !ok || !model.HasSupportedPort(se) {
		return
	}
	// A ServiceEntry may list a host twice; count it once so that add and remove
	// stay symmetric.
	seen := make(map[host.Name]bool, len(se.GetHosts()))
	for _, s := range se.GetHosts() {
		h := host.Name(s)
		if seen[h] {
			continue
		}
		seen[h] = true
		bump(x.counts, h, delta)
		if h.IsWildCarded() {
			bump(x.wildcards, h, delta)
		}
	}
}

func bump(m map[host.Name]int, h host.Name, delta int) {
	if n := m[h] + delta; n > 0 {
		m[h] = n
	} else {
		delete(m, h)
	}
}

// contains reports whether h overlaps a host of a ServiceEntry with a supported port,
// with Istio's wildcard semantics (host.Name.Matches is symmetric, so a VirtualService
// for *.example.com matches a.example.com and one for a.example.com matches a
// ServiceEntry for *.example.com). Reporting a superset of what the generators bind
// costs at most one spare push; missing one would leave a filter stale.
func (x *hostIndex) contains(h host.Name) bool {
	if x.counts[h] > 0 {
		return true
	}
	candidates := x.wildcards
	if h.IsWildCarded() {
		candidates = x.counts
	}
	for k := range candidates {
		if h.Matches(k) {
			return true
		}
	}
	return false
}
