package xds

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
)

// resp is a response of istiod's for type u at version v.
func resp(u, v string) *discovery.DiscoveryResponse {
	return &discovery.DiscoveryResponse{TypeUrl: u, VersionInfo: v}
}

// TestPushBatchWhole: a batch is whole once every type has come since the last one,
// all at one version, whatever the order: the order of istiod's responses within a
// push is not fixed for these types.
func TestPushBatchWhole(t *testing.T) {
	mesh, se, vs, dr := gvk.MeshConfig.String(), gvk.ServiceEntry.String(), gvk.VirtualService.String(), gvk.DestinationRule.String()
	tests := []struct {
		name  string
		resps []*discovery.DiscoveryResponse
		// whole lists, per response, whether the batch is whole after it.
		whole []bool
	}{
		{
			name:  "one push in the order asked",
			resps: []*discovery.DiscoveryResponse{resp(mesh, "1"), resp(se, "1"), resp(vs, "1"), resp(dr, "1")},
			whole: []bool{false, false, false, true},
		},
		{
			name:  "one push in another order",
			resps: []*discovery.DiscoveryResponse{resp(dr, "1"), resp(vs, "1"), resp(mesh, "1"), resp(se, "1")},
			whole: []bool{false, false, false, true},
		},
		{
			name: "two pushes",
			resps: []*discovery.DiscoveryResponse{
				resp(vs, "1"), resp(dr, "1"), resp(se, "1"), resp(mesh, "1"),
				resp(se, "2"), resp(mesh, "2"), resp(vs, "2"), resp(dr, "2"),
			},
			whole: []bool{false, false, false, true, false, false, false, true},
		},
		{
			// Pushes that reuse istiod's push context carry its version again: the
			// next is whole only when all of it has come.
			name: "two pushes of one version",
			resps: []*discovery.DiscoveryResponse{
				resp(vs, "1"), resp(dr, "1"), resp(se, "1"), resp(mesh, "1"),
				resp(dr, "1"), resp(vs, "1"), resp(se, "1"), resp(mesh, "1"),
			},
			whole: []bool{false, false, false, true, false, false, false, true},
		},
		{
			// A push of what was asked so far comes between the answers to the first
			// requests: the newer response of a type replaces the older.
			name: "push while the first requests are answered",
			resps: []*discovery.DiscoveryResponse{
				resp(mesh, "1"), resp(se, "1"), resp(mesh, "2"), resp(se, "2"), resp(vs, "2"), resp(dr, "2"),
			},
			whole: []bool{false, false, false, false, false, true},
		},
		{
			name: "every type but of two versions",
			resps: []*discovery.DiscoveryResponse{
				resp(mesh, "1"), resp(se, "1"), resp(vs, "1"), resp(dr, "2"), resp(mesh, "2"), resp(se, "2"), resp(vs, "2"),
			},
			whole: []bool{false, false, false, false, false, false, true},
		},
	}
	types := []string{mesh, se, vs, dr}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newPushBatch(types)
			for i, r := range tt.resps {
				whole := b.add(r)
				if whole != tt.whole[i] {
					t.Fatalf("after response %d (%s %s): whole = %v, want %v", i, r.GetTypeUrl(), r.GetVersionInfo(), whole, tt.whole[i])
				}
				if whole {
					got := b.take()
					if len(got) != len(types) {
						t.Fatalf("took %d responses, want one per type", len(got))
					}
					for u, g := range got {
						if g.GetVersionInfo() != r.GetVersionInfo() {
							t.Errorf("took %s at version %s, want %s", u, g.GetVersionInfo(), r.GetVersionInfo())
						}
					}
					if !b.empty() {
						t.Error("batch not empty after take")
					}
				}
			}
		})
	}
}

func TestPushBatchMissing(t *testing.T) {
	b := newPushBatch([]string{gvk.MeshConfig.String(), gvk.ServiceEntry.String(), gvk.VirtualService.String(), gvk.DestinationRule.String()})
	b.add(resp(gvk.VirtualService.String(), "7"))
	types, versions := b.missing()
	want := []string{gvk.MeshConfig.String(), gvk.ServiceEntry.String(), gvk.DestinationRule.String()}
	if !slices.Equal(types, want) || !slices.Equal(versions, []string{"7"}) {
		t.Errorf("missing = %v %v, want %v [7]", types, versions, want)
	}
}

// mcpResource is an "api" resource as istiod sends it.
func mcpResource(t *testing.T, c config.Config) *anypb.Any {
	t.Helper()
	r, err := config.PilotConfigToResource(&c)
	if err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(r)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestReplaceKind: a response replaces the kind's objects in the store; an object
// without a resource version (istiod's synthetic ServiceEntries) is rewritten every
// time, and carries no trace of the version annotation the store reads. The objects
// whose content changed are told, no others: a resend of the same is no change.
func TestReplaceKind(t *testing.T) {
	store := memory.NewController(memory.MakeSkipValidation(collections.Pilot))
	entry := func(name, version, host string) config.Config {
		c := *se(name, "default", []string{host}, "tcp-dubbo")
		c.ResourceVersion = version
		c.Annotations = map[string]string{"keep": "me"}
		return c
	}
	var changed []string
	apply := func(cfgs ...config.Config) {
		t.Helper()
		changed = nil
		r := &discovery.DiscoveryResponse{TypeUrl: gvk.ServiceEntry.String()}
		for _, c := range cfgs {
			r.Resources = append(r.Resources, mcpResource(t, c))
		}
		got, errs := decodeResources(gvk.ServiceEntry, r)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if errs := replaceKind(store, gvk.ServiceEntry, got, func(ns, name string) { changed = append(changed, ns+"/"+name) }); len(errs) > 0 {
			t.Fatal(errs)
		}
		slices.Sort(changed)
	}
	told := func(want ...string) {
		t.Helper()
		if !slices.Equal(changed, want) {
			t.Errorf("changes told %v, want %v", changed, want)
		}
	}
	names := func() []string {
		var out []string
		for _, c := range store.List(gvk.ServiceEntry, "") {
			out = append(out, c.Name+"@"+c.ResourceVersion)
		}
		slices.Sort(out)
		return out
	}

	apply(entry("a", "1", "a.example"), entry("b", "5", "b.example"))
	if got, want := names(), []string{"a@1", "b@5"}; !slices.Equal(got, want) {
		t.Fatalf("store %v, want %v", got, want)
	}
	told("default/a", "default/b")
	apply(entry("a", "2", "a2.example"), entry("synthetic-c", "", "c.default.svc.cluster.local"))
	told("default/a", "default/b", "default/synthetic-c")
	if got := names(); len(got) != 2 || got[0] != "a@2" || !strings.HasPrefix(got[1], "synthetic-c@") {
		t.Fatalf("store %v, want a@2 and synthetic-c", got)
	}
	if h := store.Get(gvk.ServiceEntry, "a", "default").Spec.(*networking.ServiceEntry).GetHosts(); !slices.Equal(h, []string{"a2.example"}) {
		t.Errorf("a's hosts %v, want the updated ones", h)
	}
	before := store.Get(gvk.ServiceEntry, "synthetic-c", "default").ResourceVersion
	apply(entry("a", "2", "a2.example"), entry("synthetic-c", "", "c.default.svc.cluster.local"))
	told()
	c := store.Get(gvk.ServiceEntry, "synthetic-c", "default")
	if c.ResourceVersion == "" || c.ResourceVersion == before {
		t.Errorf("synthetic-c kept resource version %q: an object without one is rewritten on every push", before)
	}
	if want := map[string]string{"keep": "me"}; !maps.Equal(c.Annotations, want) {
		t.Errorf("annotations = %v, want %v", c.Annotations, want)
	}
	if want := map[string]string{"keep": "me"}; !maps.Equal(store.Get(gvk.ServiceEntry, "a", "default").Annotations, want) {
		t.Errorf("a's annotations = %v, want %v", store.Get(gvk.ServiceEntry, "a", "default").Annotations, want)
	}

	bad := &discovery.DiscoveryResponse{Resources: []*anypb.Any{mustAny(t, &mcp.Resource{Metadata: &mcp.Metadata{Name: "no-namespace"}})}}
	if _, errs := decodeResources(gvk.ServiceEntry, bad); len(errs) != 1 {
		t.Errorf("a resource named without a namespace: errors %v, want one", errs)
	}
}

func mustAny(t *testing.T, r *mcp.Resource) *anypb.Any {
	t.Helper()
	a, err := anypb.New(r)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestWatcherAppliesWholePushes: the store, Snapshot and HasSynced show nothing of a
// push until every type of it has come; a push that never completes is applied
// after the timeout.
func TestWatcherAppliesWholePushes(t *testing.T) {
	w := NewWatcher(Options{Address: "unused:1", wholePushTimeout: 50 * time.Millisecond}, nil)
	w.store = memory.NewController(memory.MakeSkipValidation(collections.Pilot))
	t.Cleanup(w.stopBatches)
	withSE := func(v string, cfgs ...config.Config) *discovery.DiscoveryResponse {
		r := resp(gvk.ServiceEntry.String(), v)
		for _, c := range cfgs {
			r.Resources = append(r.Resources, mcpResource(t, c))
		}
		return r
	}
	a := *se("a", "default", []string{"a.example"}, "tcp-dubbo")
	a.ResourceVersion = "1"
	now := time.Now()
	w.received(withSE("1", a), now)
	w.received(resp(gvk.VirtualService.String(), "1"), now)
	w.received(resp(gvk.MeshConfig.String(), "1"), now)
	w.received(resp(gvk.WorkloadEntry.String(), "1"), now)
	if ses, _, _ := w.Snapshot(); len(ses) != 0 || w.HasSynced() {
		t.Fatalf("every type but one applied: snapshot %v, synced %v", ses, w.HasSynced())
	}
	w.received(resp(gvk.DestinationRule.String(), "1"), now)
	if ses, _, _ := w.Snapshot(); len(ses) != 1 || !w.HasSynced() {
		t.Fatalf("whole push: snapshot %v, synced %v, want a and synced", ses, w.HasSynced())
	}

	// A push that never completes: applied after the timeout, not before.
	w.received(withSE("2"), time.Now())
	if ses, _, _ := w.Snapshot(); len(ses) != 1 {
		t.Fatalf("half a push applied at once: %v", ses)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ses, _, _ := w.Snapshot(); len(ses) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an incomplete push was never applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
