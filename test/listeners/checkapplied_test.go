package listeners

import (
	"slices"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/patch"
	zookeeperplugin "aeraki.io/aeraki/plugin/zookeeper"
)

// TestCheckAppliedPlacement holds CheckApplied itself to the placement rules: it
// accepts the listeners istiod built for a ZooKeeper service (INSERT_BEFORE tcp_proxy)
// and reports, for every EnvoyFilter, a filter moved after tcp_proxy, one with another
// filter in between, one inserted twice, one whose tcp_proxy is gone, a patch that
// names no filter to insert before, and the same listeners read as INSERT_AFTER.
func TestCheckAppliedPlacement(t *testing.T) {
	zk := zookeeperSE
	m := New(t, zk.serviceEntry())
	out, in := m.Listeners(client), m.Listeners(zk.seServer())
	for _, ef := range m.EnvoyFilters {
		for _, p := range ef.Spec.GetConfigPatches() {
			if p.GetPatch().GetOperation() != networking.EnvoyFilter_Patch_INSERT_BEFORE {
				t.Fatalf("EnvoyFilter %s: operation %v, the test needs INSERT_BEFORE", ef.Key(), p.GetPatch().GetOperation())
			}
		}
	}
	m.CheckApplied(t, out, in)
	if t.Failed() {
		t.FailNow()
	}

	other := &listener.Filter{Name: "envoy.filters.network.rbac"}
	for _, c := range []struct {
		name string
		// edit changes the filters of every chain that carries zookeeper_proxy.
		edit func(fs []*listener.Filter, at int) []*listener.Filter
		// patch changes every patch of the EnvoyFilters.
		patch func(p *networking.EnvoyFilter_EnvoyConfigObjectPatch)
		want  string
	}{
		{
			name: "after tcp_proxy",
			edit: func(fs []*listener.Filter, at int) []*listener.Filter {
				f := fs[at]
				return append(slices.Delete(fs, at, at+1), f)
			},
			want: "not immediately before",
		},
		{
			name: "a filter in between",
			edit: func(fs []*listener.Filter, at int) []*listener.Filter {
				return slices.Insert(fs, at+1, other)
			},
			want: "not immediately before",
		},
		{
			name: "twice",
			edit: func(fs []*listener.Filter, at int) []*listener.Filter {
				return slices.Insert(fs, at, fs[at])
			},
			want: "more than once",
		},
		{
			name: "tcp_proxy gone",
			edit: func(fs []*listener.Filter, _ int) []*listener.Filter {
				return slices.DeleteFunc(fs, func(f *listener.Filter) bool { return f.GetName() == patch.TCPProxyFilter })
			},
			want: "which is gone",
		},
		{
			name: "no filter to match",
			patch: func(p *networking.EnvoyFilter_EnvoyConfigObjectPatch) {
				p.GetMatch().GetListener().GetFilterChain().Filter = nil
			},
			want: "names no filter to match",
		},
		{
			name: "INSERT_AFTER expected",
			patch: func(p *networking.EnvoyFilter_EnvoyConfigObjectPatch) {
				p.GetPatch().Operation = networking.EnvoyFilter_Patch_INSERT_AFTER
			},
			want: "not immediately after",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := &Mesh{EnvoyFilters: m.EnvoyFilters}
			if c.patch != nil {
				edited.EnvoyFilters = nil
				for _, ef := range m.EnvoyFilters {
					cp := *ef
					cp.Spec = proto.Clone(ef.Spec).(*networking.EnvoyFilter)
					for _, p := range cp.Spec.GetConfigPatches() {
						c.patch(p)
					}
					edited.EnvoyFilters = append(edited.EnvoyFilters, &cp)
				}
			}
			editedOut, editedIn := editListeners(out, c.edit), editListeners(in, c.edit)
			rec := &recorder{TB: t}
			edited.CheckApplied(rec, editedOut, editedIn)
			for _, ef := range m.EnvoyFilters {
				if !rec.mentionsAll(ef.Key(), c.want) {
					t.Errorf("CheckApplied did not report %q for EnvoyFilter %s; it reported %q", c.want, ef.Key(), rec.errs)
				}
			}
		})
	}
}

// editListeners returns copies of ls in which edit changed the filters of every chain
// that carries zookeeper_proxy (at its index); nil edit copies only.
func editListeners(ls []*listener.Listener, edit func([]*listener.Filter, int) []*listener.Filter) []*listener.Listener {
	out := make([]*listener.Listener, 0, len(ls))
	for _, l := range ls {
		l = proto.Clone(l).(*listener.Listener)
		for _, fc := range l.GetFilterChains() {
			at := slices.Index(FilterNames(fc), zookeeperplugin.FilterName)
			if edit != nil && at >= 0 {
				fc.Filters = edit(fc.Filters, at)
			}
		}
		out = append(out, l)
	}
	return out
}

func (r *recorder) mentionsAll(ss ...string) bool {
	for _, e := range r.errs {
		if !slices.ContainsFunc(ss, func(s string) bool { return !strings.Contains(e, s) }) {
			return true
		}
	}
	return false
}
