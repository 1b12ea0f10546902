package listeners

import (
	"testing"

	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin/redis"
)

// headlessRedis is a Redis StatefulSet behind a headless Service: clients reach
// each pod by its own address.
const headlessRedis = `
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec:
  clusterIP: None
  selector: {app: cache}
  ports:
  - {name: tcp-redis, port: 6379, targetPort: 6379, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata: {name: cache-0, namespace: shop, labels: {app: cache}}
spec:
  containers:
  - {name: redis, image: redis, ports: [{containerPort: 6379}]}
status:
  phase: Running
  podIP: 10.0.3.7
  podIPs: [{ip: 10.0.3.7}]
  conditions:
  - {type: Ready, status: "True"}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cache-0
  namespace: shop
  labels: {kubernetes.io/service-name: cache}
addressType: IPv4
ports:
- {name: tcp-redis, port: 6379, protocol: TCP}
endpoints:
- addresses: [10.0.3.7]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: cache-0, namespace: shop}
`

// TestHeadlessServiceOnListeners: on istiod's own listeners, the per-endpoint
// listener istiod builds for each pod of a headless Service carries the protocol
// filter in tcp_proxy's place, and nothing is left as plain TCP.
func TestHeadlessServiceOnListeners(t *testing.T) {
	m := New(t, "", KubeObjects(t, headlessRedis)...)
	client := Proxy{Name: "client-0", Namespace: "apps", IP: "10.0.1.1", Labels: map[string]string{"app": "client"}}
	l := Find(m.Listeners(client), "10.0.3.7_6379")
	if l == nil {
		t.Fatal("no per-endpoint listener 10.0.3.7_6379")
	}
	for _, fc := range l.GetFilterChains() {
		if Filter(fc, redis.FilterName) == nil || Filter(fc, patch.TCPProxyFilter) != nil {
			t.Errorf("chain %q: filters %v, want redis_proxy in tcp_proxy's place", fc.GetName(), FilterNames(fc))
		}
	}
	if len(m.Skipped) != 0 {
		t.Errorf("notes %v, want none", m.Skipped)
	}
}
