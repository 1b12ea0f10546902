package translate

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/plugin"
)

// hugeEntry is a Dubbo ServiceEntry with n addresses on port 20890, which no other
// service of the fixtures declares.
func hugeEntry(n int) model.Object {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
	}
	return fixture.Object("huge", &networking.ServiceEntry{
		Hosts: []string{"huge.bench.example"}, Addresses: addrs, Resolution: networking.ServiceEntry_STATIC,
		Ports:            []*networking.ServicePort{{Number: 20890, Name: "tcp-dubbo", Protocol: "TCP"}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "huge"}},
	}, map[string]string{"interface": "org.example.Huge"})
}

// A ServiceEntry of 20,000 addresses is refused with a message, costs nothing like
// the EnvoyFilter it would have made, and every other service generates; on a shared
// port, where its clients' side is the port's one filter, it generates.
func TestHugeServiceEntryIsBounded(t *testing.T) {
	snap := fixture.Snapshot(fixture.Dubbo, 3)
	snap.ServiceEntries = append(snap.ServiceEntries, hugeEntry(20_000))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr, err := Translate(testContext, plugin.Registry(plugin.Options{}), snap)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("translating 3 services and one of 20,000 addresses allocated %.1f MiB", float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	serr := tr.Failed[fixture.Namespace+"/huge"]
	if serr == nil || !strings.Contains(serr.Error(), "20000 addresses") {
		t.Errorf("huge: %v, want it refused for its addresses", serr)
	}
	if len(tr.Failed) != 1 || len(tr.Filters) != 6 {
		t.Errorf("%d failed, %d filters: the other three services must generate their six", len(tr.Failed), len(tr.Filters))
	}
	for _, ef := range tr.Filters {
		if err := ef.CheckSize(); err != nil {
			t.Error(err)
		}
	}

	shared, err := Translate(sharingContext, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared.Failed) != 0 {
		t.Errorf("shared ports: failed %v, want none: the clients' side is the port's filter", SortedErrors(shared.Failed))
	}
}

// A VirtualService whose rules would make an EnvoyFilter larger than the apiserver
// stores fails its service with the size, and nothing that large is written.
func TestOversizedEnvoyFilterIsRefused(t *testing.T) {
	snap := fixture.Snapshot(fixture.Dubbo, 2)
	vs := snap.VirtualServices[0].Spec.(*networking.VirtualService)
	var rules []*networking.HTTPRoute
	for i := range 6000 {
		rules = append(rules, &networking.HTTPRoute{
			Name:  fmt.Sprintf("rule-%d-%s", i, strings.Repeat("x", 100)),
			Match: []*networking.HTTPMatchRequest{{Method: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: fmt.Sprintf("method%d%s", i, strings.Repeat("y", 100))}}}},
			Route: vs.GetHttp()[0].GetRoute(),
		})
	}
	big := proto.Clone(vs).(*networking.VirtualService)
	big.Http = rules
	snap.VirtualServices[0] = fixture.Object(snap.VirtualServices[0].Name, big, nil)
	tr, err := Translate(testContext, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	serr := tr.Failed[fixture.Namespace+"/dubbo-0"]
	if serr == nil || !strings.Contains(serr.Error(), "more than the 1048576 the apiserver can store") {
		t.Errorf("dubbo-0: %v, want it refused for its size", serr)
	}
	if len(tr.Filters) != 2 {
		t.Errorf("%d filters, want dubbo-1's two", len(tr.Filters))
	}
}
