package listeners

import (
	"fmt"
	"testing"

	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin/redis"
)

// headlessRedis is a Redis StatefulSet behind a headless Service: clients reach
// each pod by its own address.
var headlessRedis = headlessYAML("shop", "cache", "{}", "tcp-redis", 6379, "10.0.3.7")

// headlessYAML is a headless Service with annotations (YAML flow map), one port,
// and one ready Pod at podIP, as istiod's Kubernetes registry reads them: the
// Service, the Pod and its EndpointSlice.
func headlessYAML(namespace, name, annotations, portName string, port int, podIP string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s, annotations: %[3]s}
spec:
  clusterIP: None
  selector: {app: %[2]s}
  ports:
  - {name: %[4]s, port: %[5]d, targetPort: %[5]d, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata: {name: %[2]s-0, namespace: %[1]s, labels: {app: %[2]s}}
spec:
  containers:
  - {name: app, image: %[2]s, ports: [{containerPort: %[5]d}]}
status:
  phase: Running
  podIP: %[6]s
  podIPs: [{ip: %[6]s}]
  conditions:
  - {type: Ready, status: "True"}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s-0
  namespace: %[1]s
  labels: {kubernetes.io/service-name: %[2]s, service.kubernetes.io/headless: ""}
addressType: IPv4
ports:
- {name: %[4]s, port: %[5]d, protocol: TCP}
endpoints:
- addresses: [%[6]s]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: %[2]s-0, namespace: %[1]s}
`, namespace, name, annotations, portName, port, podIP)
}

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
