package patch

import (
	"testing"

	"aeraki.io/aeraki/pkg/generator"
)

func TestRouteDiscoveryFilterNeedsTheWholeServer(t *testing.T) {
	whole := generator.RouteDiscovery{Cluster: "c", Host: "h", Port: 1, Identities: []string{"spiffe://td/ns/n/sa/s"}}
	for name, change := range map[string]func(*generator.RouteDiscovery){
		"cluster":    func(rd *generator.RouteDiscovery) { rd.Cluster = "" },
		"host":       func(rd *generator.RouteDiscovery) { rd.Host = "" },
		"port":       func(rd *generator.RouteDiscovery) { rd.Port = 0 },
		"identities": func(rd *generator.RouteDiscovery) { rd.Identities = nil },
	} {
		rd := whole
		change(&rd)
		if _, err := RouteDiscoveryFilter(&generator.Context{RootNamespace: "istio-system", RouteDiscovery: &rd}); err == nil {
			t.Errorf("no %s: no error", name)
		}
	}
	rd := whole
	ef, err := RouteDiscoveryFilter(&generator.Context{RootNamespace: "istio-system", RouteDiscovery: &rd})
	if err != nil || ef.Namespace != "istio-system" || len(ef.Spec.GetConfigPatches()) != 1 {
		t.Errorf("whole: %v, %v", ef, err)
	}
	if _, err := RouteDiscoveryFilter(&generator.Context{}); err == nil {
		t.Error("no route discovery: no error")
	}
}
