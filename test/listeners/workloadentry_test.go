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
	onWorkloadEntryPorts(t, "dubbo", "shop", 30880, 20880, func(m *Mesh, p Proxy, port uint32) {
		chains := InboundChains(m.Listeners(p), port)
		checkChains(t, fmt.Sprintf("%s inbound %d", p.Name, port), chains, dubboplugin.FilterName, true, dubboServerSide(amodel.InboundClusterName(port)))
	})
}

// onWorkloadEntryPorts starts istiod with plugin/<protocol>/testdata/
// workload-entry-ports.yaml (workloads labelled app: <app> in the namespace named
// after the protocol) and checks the VM vm-0, whose WorkloadEntry moves the port to
// moved, and vm-1, on the target port.
func onWorkloadEntryPorts(t *testing.T, protocol, app string, moved, target uint32, check func(m *Mesh, p Proxy, port uint32)) {
	t.Helper()
	in, err := os.ReadFile("../../plugin/" + protocol + "/testdata/workload-entry-ports.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := New(t, string(in))
	labels := map[string]string{"app": app}
	check(m, Proxy{Name: "vm-0", Namespace: protocol, IP: "10.0.0.30", Labels: labels}, moved)
	check(m, Proxy{Name: "vm-1", Namespace: protocol, IP: "10.0.0.31", Labels: labels}, target)
}

// TestRedisAuthOnWorkloadEntryPorts: on istiod's own listeners and clusters, with
// server auth, a VM whose WorkloadEntry moves the Redis port to 36379 gets the
// redis_proxy requiring the auth on that inbound chain, and its inbound cluster of
// that number authenticates to the local server; a workload on the target port
// likewise on 6379.
func TestRedisAuthOnWorkloadEntryPorts(t *testing.T) {
	onWorkloadEntryPorts(t, "redis", "cache", 36379, 6379, func(m *Mesh, p Proxy, port uint32) {
		rp := redisProxyOn(t, InboundChains(m.Listeners(p), port)...)
		if pws := rp.GetDownstreamAuthPasswords(); len(pws) != 1 || pws[0].GetInlineString() != "s3cret" {
			t.Errorf("%s inbound %d: redis_proxy downstream auth %v", p.Name, port, pws)
		}
		inbound := findCluster(t, m.Server.Clusters(m.SetupProxy(p)), amodel.InboundClusterName(port))
		if opts := protocolOptionsOf(t, inbound); opts.GetAuthPassword().GetInlineString() != "s3cret" {
			t.Errorf("%s: cluster %s redis protocol options %v, want the auth", p.Name, inbound.GetName(), opts)
		}
		validateCluster(t, inbound)
	})
}
