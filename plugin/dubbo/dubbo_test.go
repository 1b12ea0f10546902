package dubbo

import (
	"testing"

	"aeraki.io/aeraki/pkg/envoyfilter/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

func TestGolden(t *testing.T) {
	for _, name := range []string{
		"service-entry",     // one VIP, workload selector: outbound and inbound
		"multi-vip",         // a patch per VIP listener
		"no-selector",       // outbound only
		"no-address",        // inbound only
		"target-port",       // inbound uses the target port
		"missing-interface", // error, no filter
		"nothing-to-patch",  // no address and no selector: error
		"two-dubbo-ports",   // a filter pair per port
	} {
		t.Run(name, func(t *testing.T) { generatortest.Golden(t, New(), model.Dubbo, name) })
	}
}
