package redis

import (
	"testing"

	"aeraki.io/aeraki/pkg/envoyfilter/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

func TestGolden(t *testing.T) {
	for _, name := range []string{
		"service-entry",      // one VIP, workload selector: outbound and inbound, default route and timeout
		"kubernetes-service", // synthetic entry, inbound on the target port
		"two-redis-ports",    // a filter pair per port, each to its own cluster
	} {
		t.Run(name, func(t *testing.T) { generatortest.Golden(t, New(), model.Redis, name) })
	}
}
