package apiserver_test

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/metrics/metricstest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
)

// On a real apiserver: after one change among many services, a push generates that
// service alone and makes exactly one write; a resync generates everything and
// writes nothing.
func TestPushAfterOneChange(t *testing.T) {
	const n = 100
	h := newHarness(t)
	h.source.swap(fixture.Snapshot(fixture.Dubbo, n))
	translated := func() (generated, reused float64) {
		return metricstest.Value(t, h.metrics, "aeraki_translated_services_total", "result", metrics.TranslateGenerated),
			metricstest.Value(t, h.metrics, "aeraki_translated_services_total", "result", metrics.TranslateReused)
	}

	// Converge first (other tests of this apiserver may have left filters of ours).
	if _, err := h.push(); err != nil {
		t.Fatal(err)
	}
	h.waitFor(func(cur map[string]*model.EnvoyFilter) bool {
		bench := 0
		for k := range cur {
			if strings.Contains(k, "."+fixture.Namespace+".example-") {
				bench++
			}
		}
		return bench == 2*n && len(cur) == 2*n
	})
	waitUpToDate(h, 0)

	g0, r0 := translated()
	h.source.change(func(snap *model.Snapshot) model.Change {
		vs := snap.VirtualServices[7]
		vs.Spec = fixture.Split(vs.Spec.(*networking.VirtualService).GetHosts()[0], 50)
		vs.ResourceVersion = "2"
		snap.VirtualServices[7] = vs
		return model.Change{Kind: model.VirtualServiceKind, Object: vs}
	})
	if writes, err := h.push(); err != nil || writes != 1 {
		t.Fatalf("push after one change: %d writes, err %v; want exactly 1", writes, err)
	}
	if g, r := translated(); g-g0 != 1 || r-r0 != n-1 {
		t.Errorf("push after one change generated %v and reused %v services; want 1 and %d", g-g0, r-r0, n-1)
	}
	if !strings.Contains(specJSON(t, h.get("aeraki-outbound-dubbo-7.bench.example-20880")), `"weight":50`) {
		t.Error("the changed service's outbound EnvoyFilter does not carry the new weight")
	}
	waitUpToDate(h, 0)

	g0, _ = translated()
	h.ctrl.Resync()
	if writes, err := h.push(); err != nil || writes != 0 {
		t.Fatalf("resync push: %d writes, err %v; want none", writes, err)
	}
	if g, _ := translated(); g-g0 != n {
		t.Errorf("resync push generated %v services, want all %d", g-g0, n)
	}
}

// A push returns once the cache shows its writes, so the next push plans from them:
// no create is repeated, no delete.
func TestPushReturnsOnceTheCacheHasItsWrites(t *testing.T) {
	const n = 100
	h := newHarness(t)
	bench := func() int {
		cur, err := h.applier.Current(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for k := range cur {
			if strings.Contains(k, "."+fixture.Namespace+".example-") {
				count++
			}
		}
		return count
	}
	h.source.swap(fixture.Snapshot(fixture.Dubbo, n))
	if _, err := h.push(); err != nil {
		t.Fatal(err)
	}
	if got := bench(); got != 2*n {
		t.Fatalf("right after the push the cache has %d of its %d EnvoyFilters", got, 2*n)
	}
	if writes, err := h.push(); err != nil || writes != 0 {
		t.Fatalf("the push right after: %d writes, err %v; want none", writes, err)
	}
	h.source.swap(fixture.Snapshot(fixture.Dubbo, 0))
	if _, err := h.push(); err != nil {
		t.Fatal(err)
	}
	if got := bench(); got != 0 {
		t.Fatalf("right after the deleting push the cache still has %d", got)
	}
	if writes, err := h.push(); err != nil || writes != 0 {
		t.Fatalf("the push right after the deletes: %d writes, err %v; want none", writes, err)
	}
}
