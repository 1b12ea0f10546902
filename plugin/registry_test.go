package plugin

import (
	"slices"
	"testing"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

func TestRegistry(t *testing.T) {
	reg := Registry(Options{})
	for p, gen := range reg {
		if !p.Supported() {
			t.Errorf("generator registered for %q, which no port name can declare", p)
		}
		if gen == nil {
			t.Errorf("nil generator for %q", p)
		}
	}
	for _, p := range model.Protocols {
		if reg[p] == nil {
			t.Errorf("no generator for %s", p)
		}
	}
}

// Every shared port's routes are of a type RouteTypes lists: the route server's
// metrics start a series for each.
func TestRouteTypesCoverTheSharers(t *testing.T) {
	ctx := generatortest.Context.WithLookup(nil)
	ctx.RouteDiscovery = generatortest.RouteDiscovery
	sharers := 0
	for p, gen := range Registry(Options{}) {
		sharer, ok := gen.(generator.Sharer)
		if !ok {
			continue
		}
		sharers++
		_, rc, err := sharer.Shared(ctx, 20880, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !slices.Contains(RouteTypes(), rc.TypeURL) {
			t.Errorf("%s shares routes of type %s, which RouteTypes %v lacks", p, rc.TypeURL, RouteTypes())
		}
	}
	if sharers == 0 {
		t.Error("no generator shares its ports")
	}
}
