package listeners

import (
	"testing"

	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/plugin/dubbo"
)

// allocatedDubbo is an external Dubbo service reached by DNS name, without addresses,
// for which Istio allocated an IPv4 and an IPv6 address (its status, as istiod's
// allocator writes it).
const allocatedDubbo = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: dubbo, annotations: {interface: org.example.Greeter}}
spec:
  hosts: [greeter.example]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: DNS
  location: MESH_EXTERNAL
status:
  addresses:
  - {value: 240.240.0.5, host: greeter.example}
  - {value: "2001:2::5", host: greeter.example}
`

// TestAutoAllocatedAddressOnListeners: on istiod's own listeners, a sidecar that
// captures DNS reaches a ServiceEntry without addresses on the listener of the
// address Istio allocated for it, of its own IP family, and that listener carries
// dubbo_proxy in tcp_proxy's place; a sidecar that does not capture DNS has no such
// listener, and keeps the filter on 0.0.0.0_<port>. Nothing is left as plain TCP.
// The same holds with the port shared, whose filter goes on every listener of it.
func TestAutoAllocatedAddressOnListeners(t *testing.T) {
	for _, mode := range routeModes {
		t.Run(mode.name, func(t *testing.T) { checkAllocatedListeners(t, NewIn(t, mode.ctx, plugin.Options{}, allocatedDubbo)) })
	}
}

func checkAllocatedListeners(t *testing.T, m *Mesh) {
	t.Helper()
	if len(m.Skipped) != 0 {
		t.Errorf("notes %v, want none", m.Skipped)
	}
	for _, c := range []struct {
		name   string
		proxy  Proxy
		want   string
		absent string
	}{
		{name: "capturing DNS", proxy: Proxy{Name: "client-0", Namespace: "apps", IP: "10.0.1.1", DNSCapture: true},
			want: "240.240.0.5_20880", absent: "0.0.0.0_20880"},
		{name: "capturing DNS, IPv6 only", proxy: Proxy{Name: "client-1", Namespace: "apps", IP: "fd00::1", DNSCapture: true},
			want: "2001:2::5_20880", absent: "240.240.0.5_20880"},
		{name: "not capturing DNS", proxy: Proxy{Name: "client-2", Namespace: "apps", IP: "10.0.1.2"},
			want: "0.0.0.0_20880", absent: "240.240.0.5_20880"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ls := m.Listeners(c.proxy)
			if Find(ls, c.absent) != nil {
				t.Errorf("listener %s, want none: %v", c.absent, Names(ls))
			}
			l := Find(ls, c.want)
			if l == nil {
				t.Fatalf("no listener %s: %v", c.want, Names(ls))
			}
			for _, fc := range l.GetFilterChains() {
				if Filter(fc, dubbo.FilterName) == nil || Filter(fc, patch.TCPProxyFilter) != nil {
					t.Errorf("%s chain %q: filters %v, want dubbo_proxy in tcp_proxy's place", c.want, fc.GetName(), FilterNames(fc))
				}
			}
		})
	}
}
