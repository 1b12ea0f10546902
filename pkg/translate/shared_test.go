package translate

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"

	dubbov3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/plugin"
)

// sharingContext is the golden tests' context with a route server.
var sharingContext = generator.Context{
	RootNamespace:  "istio-system",
	DomainSuffix:   "cluster.local",
	RouteDiscovery: generatortest.RouteDiscovery,
}

// TestGolden is the whole output for each input of testdata: the EnvoyFilters, the
// failures and notes, and the route configurations served.
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		ctx  generator.Context
	}{
		{"shared", sharingContext}, // with a route server
		{"views", testContext},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, errs := manifest.ReadPaths([]string{"testdata/" + c.name + ".yaml"})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			tr, err := Translate(c.ctx, plugin.Registry(plugin.Options{}), objs.Snapshot(c.ctx.DomainSuffix))
			if err != nil {
				t.Fatal(err)
			}
			filters := SortedFilters(tr.Filters)
			generatortest.Validate(t, filters)
			var out bytes.Buffer
			for _, e := range SortedErrors(tr.Failed) {
				fmt.Fprintf(&out, "# failed: %v\n", e)
			}
			for _, k := range slices.Sorted(maps.Keys(tr.Skipped)) {
				for _, e := range tr.Skipped[k] {
					fmt.Fprintf(&out, "# note: %v\n", e)
				}
			}
			if err := manifest.WriteEnvoyFilters(&out, filters); err != nil {
				t.Fatal(err)
			}
			if err := manifest.WriteRouteConfigs(&out, tr.Routes); err != nil {
				t.Fatal(err)
			}
			generatortest.Compare(t, "testdata/"+c.name+".golden.yaml", out.Bytes())
		})
	}
}

// sharedName is the shared filter and route configuration of the fixtures' port.
const sharedName = "aeraki-shared-dubbo-20880"

func TestSharingNeedsARouteServer(t *testing.T) {
	snap := fixture.Snapshot(fixture.Dubbo, 3)
	tr := translateOK(t, plugin.Registry(plugin.Options{}), snap)
	if len(tr.Routes) != 0 || tr.Filters[testContext.RootNamespace+"/"+sharedName] != nil || len(tr.Filters) != 6 {
		t.Errorf("without a route server: %d route configurations, %d filters; want none shared and two filters a service", len(tr.Routes), len(tr.Filters))
	}
}

func TestSharedPortOnlyWhenEveryServiceOfThePortHasTheProtocol(t *testing.T) {
	reg := plugin.Registry(plugin.Options{})
	tr, err := Translate(sharingContext, reg, fixture.Snapshot(fixture.Dubbo, 3))
	if err != nil {
		t.Fatal(err)
	}
	if rc := tr.Routes[sharedName]; rc == nil || len(rc.Config.(*dubbov3.MultipleRouteConfiguration).GetRouteConfig()) != 3 {
		t.Fatalf("routes %v: want the port's configuration with the three interfaces", slices.Collect(maps.Keys(tr.Routes)))
	}
	// One shared filter, the route server's cluster, three inbound filters.
	if len(tr.Filters) != 5 || tr.Filters["istio-system/"+sharedName] == nil || tr.Filters["istio-system/aeraki-route-discovery"] == nil {
		t.Errorf("filters %v: want the shared one, the route server's cluster and one inbound filter a service", slices.Sorted(maps.Keys(tr.Filters)))
	}

	// The mixed fixture declares 20880 for every protocol: nothing is shared.
	tr, err = Translate(sharingContext, reg, fixture.Snapshot(fixture.Mixed, 5))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Routes) != 0 || tr.Filters["istio-system/aeraki-route-discovery"] != nil {
		t.Errorf("a port of several protocols shared: routes %v", slices.Collect(maps.Keys(tr.Routes)))
	}
}

// TestTranslatorSharingFollowsThePort: when a service of another protocol joins the
// port, every Dubbo service of it is generated again with filters of its own, and
// shared again when it leaves.
func TestTranslatorSharingFollowsThePort(t *testing.T) {
	reg := plugin.Registry(plugin.Options{})
	tr := NewTranslator(sharingContext, reg)
	snap := fixture.Snapshot(fixture.Dubbo, 3)
	first, err := tr.Translate(snap)
	if err != nil || first.Routes[sharedName] == nil {
		t.Fatalf("first: %v, routes %v", err, first)
	}
	raw := fixture.Object("raw", &networking.ServiceEntry{
		Hosts: []string{"raw.bench.example"}, Addresses: []string{"240.240.9.9"},
		Ports: []*networking.ServicePort{{Number: 20880, Name: "tcp", Protocol: "TCP"}},
	}, nil)
	snap.ServiceEntries = append(snap.ServiceEntries, raw)
	mixed, err := tr.Translate(snap)
	if err != nil {
		t.Fatal(err)
	}
	if mixed.Generated != 3 || len(mixed.Routes) != 0 || len(mixed.Filters) != 6 {
		t.Errorf("port shared with plain TCP: %d generated, %d route configurations, %d filters; want 3, 0, 6", mixed.Generated, len(mixed.Routes), len(mixed.Filters))
	}
	snap.ServiceEntries = snap.ServiceEntries[:3]
	again, err := tr.Translate(snap)
	if err != nil {
		t.Fatal(err)
	}
	if again.Generated != 3 || again.Routes[sharedName] == nil || len(again.Filters) != 5 {
		t.Errorf("plain TCP gone: %d generated, routes %v, %d filters; want all shared again", again.Generated, slices.Collect(maps.Keys(again.Routes)), len(again.Filters))
	}
}

// TestTranslatorKeepsAFailedServicesRoutes: a service whose generation fails keeps
// its routes in the port's configuration, as it keeps its EnvoyFilters.
func TestTranslatorKeepsAFailedServicesRoutes(t *testing.T) {
	tr := NewTranslator(sharingContext, plugin.Registry(plugin.Options{}))
	snap := fixture.Snapshot(fixture.Dubbo, 2)
	good, err := tr.Translate(snap)
	if err != nil {
		t.Fatal(err)
	}
	before := good.Routes[sharedName].Config
	// A subset the DestinationRule does not define fails dubbo-0.
	vs := fixture.Object(snap.VirtualServices[0].Name, &networking.VirtualService{
		Hosts: []string{"dubbo-0.bench.example"},
		Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{
			Destination: &networking.Destination{Host: "dubbo-0.bench.example", Subset: "v9"},
		}}}},
	}, nil)
	vs.ResourceVersion = "2"
	snap.VirtualServices[0] = vs
	bad, err := tr.Translate(snap)
	if err != nil {
		t.Fatal(err)
	}
	if bad.Failed[fixture.Namespace+"/dubbo-0"] == nil {
		t.Fatalf("dubbo-0 did not fail: %v", SortedErrors(bad.Failed))
	}
	if diff := cmp.Diff(before, bad.Routes[sharedName].Config, protocmp.Transform()); diff != "" {
		t.Errorf("routes changed while dubbo-0 fails (-before +after):\n%s", diff)
	}
	// A one-shot translation has nothing to keep: the failed service's routes are gone.
	once, err := Translate(sharingContext, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(once.Routes[sharedName].Config.(*dubbov3.MultipleRouteConfiguration).GetRouteConfig()); n != 1 {
		t.Errorf("one-shot translation with dubbo-0 failing: %d interfaces routed, want 1", n)
	}
}
