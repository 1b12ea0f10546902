package listeners

import (
	"fmt"
	"os"
	"testing"

	amodel "aeraki.io/aeraki/pkg/model"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
)

// TestWorkloadEntryPortsOnListeners: on istiod's own listeners, a VM whose
// WorkloadEntry moves the Dubbo port to 30880 gets the filter on that inbound
// chain, and a workload on the target port on 20880.
func TestWorkloadEntryPortsOnListeners(t *testing.T) {
	in, err := os.ReadFile("../../plugin/dubbo/testdata/workload-entry-ports.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := New(t, string(in))
	for _, c := range []struct {
		proxy Proxy
		port  uint32
	}{
		{Proxy{Name: "vm-0", Namespace: "dubbo", IP: "10.0.0.30", Labels: map[string]string{"app": "shop"}}, 30880},
		{Proxy{Name: "vm-1", Namespace: "dubbo", IP: "10.0.0.31", Labels: map[string]string{"app": "shop"}}, 20880},
	} {
		chains := InboundChains(m.Listeners(c.proxy), c.port)
		checkChains(t, fmt.Sprintf("%s inbound %d", c.proxy.Name, c.port), chains, dubboplugin.FilterName, true, dubboServerSide(amodel.InboundClusterName(c.port)))
	}
}
