package listeners

import (
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin/redis"
)

// externalRedis is an external Redis reached by DNS name: no address of its own.
func externalRedis(name string) string {
	return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ` + name + `, namespace: shop}
spec:
  hosts: [` + name + `.external.example]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  resolution: DNS
  location: MESH_EXTERNAL
`
}

// TestDNSServiceOnListeners: on istiod's own listeners, a DNS ServiceEntry without an
// address that is the only one of its port gets the filter on 0.0.0.0_<port>, the
// listener istiod builds for it; with a second one on the port that listener is not
// one service's, and both stay plain TCP, which the user is told.
func TestDNSServiceOnListeners(t *testing.T) {
	client := Proxy{Name: "client-0", Namespace: "apps", IP: "10.0.1.1", Labels: map[string]string{"app": "client"}}
	t.Run("alone on its port", func(t *testing.T) {
		m := New(t, externalRedis("cache"))
		l := Find(m.Listeners(client), "0.0.0.0_6379")
		if l == nil {
			t.Fatal("no listener 0.0.0.0_6379")
		}
		for _, fc := range l.GetFilterChains() {
			names := FilterNames(fc)
			if Filter(fc, redis.FilterName) == nil || Filter(fc, patch.TCPProxyFilter) != nil {
				t.Errorf("chain %q: filters %v, want redis_proxy in tcp_proxy's place", fc.GetName(), names)
			}
		}
		if len(m.Skipped) != 0 {
			t.Errorf("notes %v, want none", m.Skipped)
		}
	})
	t.Run("two on one port", func(t *testing.T) {
		m := New(t, externalRedis("cache")+"---"+externalRedis("sessions"))
		if len(m.EnvoyFilters) != 0 {
			t.Errorf("%d EnvoyFilters for services that share istiod's listener", len(m.EnvoyFilters))
		}
		for _, key := range []string{"shop/cache", "shop/sessions"} {
			if notes := m.Skipped[key]; len(notes) != 1 || !strings.Contains(notes[0].Error(), "no address") {
				t.Errorf("%s: notes %v, want that it has no address", key, notes)
			}
		}
	})
}
