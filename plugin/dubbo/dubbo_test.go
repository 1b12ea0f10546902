package dubbo

import (
	"testing"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate/translatetest"
)

func TestGolden(t *testing.T) {
	for _, name := range []string{
		"service-entry",         // one VIP, workload selector: outbound and inbound
		"multi-vip",             // a patch per VIP listener
		"no-selector",           // outbound only
		"no-address",            // inbound only
		"target-port",           // inbound uses the target port
		"workload-entry-ports",  // and each number WorkloadEntries move the port to
		"no-interface",          // every interface ("*")
		"interface-list",        // a route configuration per interface, each with the rules
		"bad-interface",         // error: not a Java type name
		"two-interface-entries", // one per interface on the same workloads: one server side, the older one's
		"nothing-to-patch",      // no address and no selector: error
		"dns-no-address",        // alone on its port: the wildcard listener istiod builds for it
		"auto-allocated-vip",    // and the listeners of the addresses Istio allocated for it
		"aeraki-demo-entry",     // upstream Aeraki's demo entry: interface host, allocated address, routes
		"two-dubbo-ports",       // a filter pair per port
		"method-exact",          // VirtualService: method exact to a subset
		"method-prefix",         // method prefix
		"method-regex",          // method regex
		"header-match",          // attachments as headers
		"weighted-subsets",      // 20/80 between subsets
		"rules-in-order",        // rules in order, any match entry selects
		"short-host",            // short hosts resolve in the VirtualService's namespace; inbound not routed
		"bad-regex",             // error
		"weights-not-100",       // error
		"missing-subset",        // error
	} {
		t.Run(name, func(t *testing.T) { translatetest.Golden(t, New(), model.Dubbo, name) })
	}
}
