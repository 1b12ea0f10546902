package listeners

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	kafka "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/kafka_broker/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	thriftrouter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/thrift_proxy/router/v3"
	thrift "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/thrift_proxy/v3"
	zookeeper "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/zookeeper_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"

	kafkaplugin "aeraki.io/aeraki/plugin/kafka"
	thriftplugin "aeraki.io/aeraki/plugin/thrift"
)

// fixture is a service with one port, served by one workload: a ServiceEntry with a
// VIP and a workload selector plus a WorkloadEntry for the workload, or a Kubernetes
// Service with a ClusterIP plus a Pod.
type fixture struct {
	name, namespace string
	annotations     map[string]string
	// host is the ServiceEntry's host; a Kubernetes Service's is kubeHost().
	host string
	// vip is the ServiceEntry's address or the Service's ClusterIP.
	vip      string
	portName string
	// targetPort is the port the workloads listen on; unset, a ServiceEntry's listen
	// on port (a Kubernetes Service needs it).
	port, targetPort uint32
	// app labels the workload; the service selects app.
	app        string
	workloadIP string
}

func (f fixture) kubeHost() string { return f.name + "." + f.namespace + ".svc." + DomainSuffix }

// outbound is the client's listener for the service: <vip>_<port>.
func (f fixture) outbound() string { return f.vip + "_" + strconv.Itoa(int(f.port)) }

// serviceEntry is the ServiceEntry and a WorkloadEntry that tells istiod that the
// server sidecar (its IP and labels) is a workload of it.
func (f fixture) serviceEntry() string {
	return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ` + f.name + `
  namespace: ` + f.namespace + `
  annotations: ` + flowMap(f.annotations) + `
spec:
  hosts: [` + f.host + `]
  addresses: [` + f.vip + `]
  ports:
  - {number: ` + strconv.Itoa(int(f.port)) + `, name: ` + f.portName + `, protocol: TCP` + optional(", targetPort: ", f.targetPort) + `}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels: {app: ` + f.app + `}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ` + f.app + `
  namespace: ` + f.namespace + `
spec:
  address: ` + f.workloadIP + `
  labels: {app: ` + f.app + `, version: v1}
`
}

// optional is key followed by n, or nothing when n is 0.
func optional(key string, n uint32) string {
	if n == 0 {
		return ""
	}
	return key + strconv.Itoa(int(n))
}

// seServer is the ServiceEntry's workload sidecar.
func (f fixture) seServer() Proxy {
	return Proxy{Name: f.app + "-0", Namespace: f.namespace, IP: f.workloadIP, Labels: map[string]string{"app": f.app, "version": "v1"}}
}

// kubeService is the Kubernetes Service and a running Pod it selects.
func (f fixture) kubeService() string {
	target := strconv.Itoa(int(f.targetPort))
	return `
apiVersion: v1
kind: Service
metadata:
  name: ` + f.name + `
  namespace: ` + f.namespace + `
  annotations: ` + flowMap(f.annotations) + `
spec:
  clusterIP: ` + f.vip + `
  selector: {app: ` + f.app + `}
  ports:
  - {name: ` + f.portName + `, port: ` + strconv.Itoa(int(f.port)) + `, targetPort: ` + target + `, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata:
  name: ` + f.app + `-0
  namespace: ` + f.namespace + `
  labels: {app: ` + f.app + `}
spec:
  containers:
  - name: app
    image: server
    ports:
    - {containerPort: ` + target + `}
status:
  phase: Running
  podIP: ` + f.workloadIP + `
  podIPs: [{ip: ` + f.workloadIP + `}]
  conditions:
  - {type: Ready, status: "True"}
`
}

// kubeServer is the Kubernetes Service's Pod sidecar.
func (f fixture) kubeServer() Proxy {
	return Proxy{Name: f.app + "-0", Namespace: f.namespace, IP: f.workloadIP, Labels: map[string]string{"app": f.app}}
}

// flowMap writes a string map as a YAML flow mapping with quoted keys and values.
func flowMap(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strconv.Quote(k)+": "+strconv.Quote(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// subsetsYAML is a DestinationRule with subsets v1 and v2 (by the label version).
func subsetsYAML(namespace, host string) string {
	return `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: subsets
  namespace: ` + namespace + `
spec:
  host: ` + host + `
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`
}

// virtualServiceYAML is a VirtualService for host with the given http rules.
func virtualServiceYAML(namespace, host, http string) string {
	return `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: routes
  namespace: ` + namespace + `
spec:
  hosts: [` + host + `]
  http:` + http
}

// thriftRules: method sayHello goes to subset v2, everything else 20/80 to v1/v2.
func thriftRules(host string) string {
	return `
  - name: say-hello
    match:
    - method: {exact: sayHello}
    route:
    - destination: {host: ` + host + `, subset: v2}
  - name: split
    route:
    - destination: {host: ` + host + `, subset: v1}
      weight: 20
    - destination: {host: ` + host + `, subset: v2}
      weight: 80
`
}

// toSubset sends every request to one subset.
func toSubset(host, subset string) string {
	return `
  - route:
    - destination: {host: ` + host + `, subset: ` + subset + `}
`
}

var (
	thriftSE = fixture{
		name: "thrift-hello", namespace: "thrift",
		annotations: map[string]string{"thrift.aeraki.io/transport": "framed", "thrift.aeraki.io/protocol": "binary"},
		host:        "hello.thrift.example", vip: "240.240.0.10",
		portName: "tcp-thrift", port: 9090,
		app: "thrift-provider", workloadIP: "10.0.0.3",
	}
	thriftKube = fixture{
		name: "thrift-svc", namespace: "thrift-k8s",
		annotations: map[string]string{"thrift.aeraki.io/transport": "header", "thrift.aeraki.io/protocol": "compact"},
		vip:         "10.96.0.21",
		portName:    "tcp-thrift", port: 9090, targetPort: 9091,
		app: "thrift-k8s-provider", workloadIP: "10.0.1.3",
	}
	zookeeperSE = fixture{
		name: "zookeeper", namespace: "infra",
		host: "zookeeper.infra.example", vip: "240.240.0.20",
		portName: "tcp-zookeeper", port: 2181,
		app: "zookeeper", workloadIP: "10.0.0.4",
	}
	redisSE = fixture{
		name: "cache", namespace: "redis",
		host: "cache.redis.example", vip: "240.240.0.40",
		portName: "tcp-redis", port: 6379,
		app: "cache", workloadIP: "10.0.0.6",
	}
	redisKube = fixture{
		name: "redis", namespace: "redis-k8s",
		vip:      "10.96.0.40",
		portName: "tcp-redis", port: 6379, targetPort: 16379,
		app: "redis-k8s", workloadIP: "10.0.1.6",
	}
	zookeeperKube = fixture{
		name: "zookeeper", namespace: "zk-k8s",
		vip:      "10.96.0.30",
		portName: "tcp-zookeeper", port: 2181, targetPort: 12181,
		app: "zookeeper-k8s", workloadIP: "10.0.1.4",
	}
	kafkaSE = fixture{
		name: "kafka", namespace: "kafka",
		host: "kafka.kafka.example", vip: "240.240.0.40",
		portName: "tcp-kafka", port: 9092,
		app: "kafka", workloadIP: "10.0.0.5",
	}
	kafkaKube = fixture{
		name: "kafka", namespace: "kafka-k8s",
		vip:      "10.96.0.40",
		portName: "tcp-kafka", port: 9092, targetPort: 19092,
		app: "kafka-k8s", workloadIP: "10.0.1.5",
	}
)

// kafkaContrib returns f with the annotation that turns kafka_broker on ("true") or
// off ("false") for the service.
func (f fixture) kafkaContrib(value string) fixture {
	f.annotations = maps.Clone(f.annotations)
	if f.annotations == nil {
		f.annotations = map[string]string{}
	}
	f.annotations[kafkaplugin.ContribAnnotation] = value
	return f
}

func (f fixture) withTargetPort(port uint32) fixture { f.targetPort = port; return f }

// decodeThrift decodes a thrift_proxy filter and checks transport, protocol and that
// the router is its one Thrift filter.
func decodeThrift(t *testing.T, f *listener.Filter, transport thrift.TransportType, protocol thrift.ProtocolType) *thrift.ThriftProxy {
	t.Helper()
	tp := &thrift.ThriftProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.Fatalf("decoding %s: %v", f.GetName(), err)
	}
	if tp.GetTransport() != transport || tp.GetProtocol() != protocol {
		t.Errorf("transport %v, protocol %v; want %v, %v (from the annotations)", tp.GetTransport(), tp.GetProtocol(), transport, protocol)
	}
	tf := tp.GetThriftFilters()
	if len(tf) != 1 || tf[0].GetName() != "envoy.filters.thrift.router" {
		t.Errorf("thrift filters %v, want the router only", tf)
	} else if err := tf[0].GetTypedConfig().UnmarshalTo(&thriftrouter.Router{}); err != nil {
		t.Errorf("router config: %v", err)
	}
	return tp
}

// thriftRoutes wants the route configuration (named statPrefix, as the stat prefix) to
// hold exactly routes, in order.
func thriftRoutes(transport thrift.TransportType, protocol thrift.ProtocolType, statPrefix string, routes ...*thrift.Route) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		tp := decodeThrift(t, f, transport, protocol)
		if tp.GetStatPrefix() != statPrefix || tp.GetRouteConfig().GetName() != statPrefix {
			t.Errorf("stat_prefix %q, route config %q; want %q", tp.GetStatPrefix(), tp.GetRouteConfig().GetName(), statPrefix)
		}
		if diff := cmp.Diff(routes, tp.GetRouteConfig().GetRoutes(), protocmp.Transform()); diff != "" {
			t.Errorf("routes (-want +got):\n%s", diff)
		}
	}
}

// thriftMethod matches a method by name; "" is any method.
func thriftMethod(method string) *thrift.RouteMatch {
	return &thrift.RouteMatch{MatchSpecifier: &thrift.RouteMatch_MethodName{MethodName: method}}
}

func thriftRoute(method, cluster string) *thrift.Route {
	return &thrift.Route{Match: thriftMethod(method), Route: &thrift.RouteAction{ClusterSpecifier: &thrift.RouteAction_Cluster{Cluster: cluster}}}
}

// weighted is a cluster and its share of requests.
type weighted struct {
	cluster string
	weight  uint32
}

// thriftSplit routes every method over the clusters.
func thriftSplit(clusters ...weighted) *thrift.Route {
	wc := &thrift.WeightedCluster{}
	for _, c := range clusters {
		wc.Clusters = append(wc.Clusters, &thrift.WeightedCluster_ClusterWeight{Name: c.cluster, Weight: wrapperspb.UInt32(c.weight)})
	}
	return &thrift.Route{Match: thriftMethod(""), Route: &thrift.RouteAction{ClusterSpecifier: &thrift.RouteAction_WeightedClusters{WeightedClusters: wc}}}
}

// thriftOutboundRoutes are the client's routes for thriftRules on host:port: the
// method match, the split, then the catch-all to the host's own cluster. The names are
// istio's cluster names, written out.
func thriftOutboundRoutes(host string, port int) []*thrift.Route {
	p := strconv.Itoa(port)
	return []*thrift.Route{
		thriftRoute("sayHello", "outbound|"+p+"|v2|"+host),
		thriftSplit(weighted{"outbound|" + p + "|v1|" + host, 20}, weighted{"outbound|" + p + "|v2|" + host, 80}),
		thriftRoute("", "outbound|"+p+"||"+host),
	}
}

// zookeeperStats wants a zookeeper_proxy with the stat prefix.
func zookeeperStats(prefix string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		zk := &zookeeper.ZooKeeperProxy{}
		if err := f.GetTypedConfig().UnmarshalTo(zk); err != nil {
			t.Fatalf("decoding %s: %v", f.GetName(), err)
		}
		if zk.GetStatPrefix() != prefix {
			t.Errorf("stat_prefix %q, want %q", zk.GetStatPrefix(), prefix)
		}
	}
}

// redisCatchAll wants a redis_proxy whose every key goes to cluster, with a timeout.
func redisCatchAll(cluster string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		r := &redis.RedisProxy{}
		if err := f.GetTypedConfig().UnmarshalTo(r); err != nil {
			t.Fatalf("decoding %s: %v", f.GetName(), err)
		}
		if got := r.GetPrefixRoutes().GetCatchAllRoute().GetCluster(); got != cluster {
			t.Errorf("catch-all cluster %q, want %q", got, cluster)
		}
		if r.GetSettings().GetOpTimeout().AsDuration() <= 0 {
			t.Error("no op timeout")
		}
	}
}

// kafkaStats wants a kafka_broker with the stat prefix.
func kafkaStats(prefix string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		kb := &kafka.KafkaBroker{}
		if err := f.GetTypedConfig().UnmarshalTo(kb); err != nil {
			t.Fatalf("decoding %s: %v", f.GetName(), err)
		}
		if kb.GetStatPrefix() != prefix {
			t.Errorf("stat_prefix %q, want %q", kb.GetStatPrefix(), prefix)
		}
	}
}

// TestThriftRoutesFollowVirtualService builds the mesh twice: the VirtualService sends
// every call to subset v1, then it is changed to send them to v2. The client's outbound
// thrift_proxy routes follow, before the catch-all; the server side does not route.
func TestThriftRoutesFollowVirtualService(t *testing.T) {
	se := thriftSE
	host := se.host
	base := se.serviceEntry() + subsetsYAML(se.namespace, host)
	var yamls []string
	for _, subset := range []string{"v1", "v2"} {
		t.Run("to "+subset, func(t *testing.T) {
			m := New(t, base+virtualServiceYAML(se.namespace, host, toSubset(host, subset)))
			yamls = append(yamls, m.EnvoyFilterYAML)
			out, in := m.Listeners(client), m.Listeners(se.seServer())
			l := Find(out, se.outbound())
			if l == nil {
				t.Fatalf("client has no listener %s; listeners %v", se.outbound(), Names(out))
			}
			checkChains(t, "outbound "+se.outbound(), l.GetFilterChains(), thriftplugin.FilterName, true,
				thriftRoutes(thrift.TransportType_FRAMED, thrift.ProtocolType_BINARY, "outbound|9090||"+host,
					thriftRoute("", "outbound|9090|"+subset+"|"+host),
					thriftRoute("", "outbound|9090||"+host)))
			checkChains(t, "inbound port 9090", InboundChains(in, 9090), thriftplugin.FilterName, true,
				thriftRoutes(thrift.TransportType_FRAMED, thrift.ProtocolType_BINARY, "inbound|9090||",
					thriftRoute("", "inbound|9090||")))
			m.CheckApplied(t, out, in)
			checkClusters(t, m, client, "outbound|9090|"+subset+"|"+host, "outbound|9090||"+host)
		})
	}
	if len(yamls) == 2 && yamls[0] == yamls[1] {
		t.Error("the EnvoyFilters did not change with the VirtualService")
	}
}
