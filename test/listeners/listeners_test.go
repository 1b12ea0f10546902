package listeners

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	thrift "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/thrift_proxy/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/manifest"
	amodel "aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
	"aeraki.io/aeraki/plugin"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
	kafkaplugin "aeraki.io/aeraki/plugin/kafka"
	redisplugin "aeraki.io/aeraki/plugin/redis"
	thriftplugin "aeraki.io/aeraki/plugin/thrift"
	zookeeperplugin "aeraki.io/aeraki/plugin/zookeeper"
)

// protocolCase is one service whose protocol filter must show on a client sidecar's
// outbound listener and on a workload sidecar's virtualInbound chain. A new protocol
// is one more row.
type protocolCase struct {
	name string
	// istio is Istio config (namespaces set); kube is Kubernetes YAML (Services, Pods).
	istio, kube string
	// client is a sidecar that calls the service; server is one of its workloads.
	client, server Proxy
	// outbound is the client's listener <vip>_<port>; inboundPort the workload port.
	outbound    string
	inboundPort uint32
	// filter is the protocol's network filter; replacesTCPProxy says it takes
	// tcp_proxy's place rather than sitting in front of it.
	filter           string
	replacesTCPProxy bool
	// checkOutbound and checkInbound look inside the filter's typed config.
	checkOutbound, checkInbound func(t *testing.T, f *listener.Filter)
	// clusters are the clusters the outbound filter routes to: istiod must send the
	// client each of them, or the routes lead nowhere.
	clusters []string
	// opts are the generators' options (controller flags).
	opts plugin.Options
	// skipped says the generator leaves the port as plain TCP on purpose: one skip
	// for service (its key), no EnvoyFilter, filter nowhere, listeners as istiod
	// builds them without us.
	skipped bool
	service string
}

const (
	dubboHost      = "org.apache.dubbo.samples.basic.api.demoservice"
	dubboInterface = "org.apache.dubbo.samples.basic.api.DemoService"
	dubboVIP       = "240.240.0.1"
)

// dubboServiceEntry is served by WorkloadEntries (and so by sidecars) labelled
// app: dubbo-provider in namespace dubbo.
const dubboServiceEntry = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: dubbo-demo
  namespace: dubbo
  annotations:
    interface: ` + dubboInterface + `
spec:
  hosts: [` + dubboHost + `]
  addresses: [` + dubboVIP + `]
  ports:
  - {number: 20880, name: tcp-dubbo, protocol: TCP}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels: {app: dubbo-provider}
---
# Tells istiod that the server sidecar (its IP and labels) is a workload of the
# ServiceEntry: without it the sidecar has no service targets, so no inbound chain.
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: dubbo-provider
  namespace: dubbo
spec:
  address: 10.0.0.2
  labels: {app: dubbo-provider, version: v1}
`

const dubboSubsets = `
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dubbo-demo
  namespace: dubbo
spec:
  host: ` + dubboHost + `
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: dubbo-demo
  namespace: dubbo
spec:
  hosts: [` + dubboHost + `]
  http:
  - route:
    - destination: {host: ` + dubboHost + `, subset: v1}
      weight: 20
    - destination: {host: ` + dubboHost + `, subset: v2}
      weight: 80
`

// dubboKubeService is a Kubernetes Service and one Pod it selects. istiod finds the
// server sidecar's Pod by the proxy ID <pod>.<namespace>, then the Services selecting
// the Pod's labels: that gives the inbound chain.
func dubboKubeService(targetPort int) string {
	return `
apiVersion: v1
kind: Service
metadata:
  name: dubbo-svc
  namespace: dubbo-k8s
  annotations:
    interface: ` + dubboInterface + `
spec:
  clusterIP: 10.96.0.20
  selector: {app: dubbo-k8s-provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: ` + strconv.Itoa(targetPort) + `, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata:
  name: dubbo-k8s-provider-0
  namespace: dubbo-k8s
  labels: {app: dubbo-k8s-provider}
spec:
  containers:
  - name: app
    image: provider
    ports:
    - {containerPort: ` + strconv.Itoa(targetPort) + `}
status:
  phase: Running
  podIP: 10.0.1.2
  podIPs: [{ip: 10.0.1.2}]
  conditions:
  - {type: Ready, status: "True"}
`
}

var (
	client       = Proxy{Name: "consumer-0", Namespace: "dubbo-client", IP: "10.0.0.1", Labels: map[string]string{"app": "dubbo-consumer"}}
	seProvider   = Proxy{Name: "dubbo-provider-0", Namespace: "dubbo", IP: "10.0.0.2", Labels: map[string]string{"app": "dubbo-provider", "version": "v1"}}
	kubeProvider = Proxy{Name: "dubbo-k8s-provider-0", Namespace: "dubbo-k8s", IP: "10.0.1.2", Labels: map[string]string{"app": "dubbo-k8s-provider"}}
)

func protocolCases() []protocolCase {
	kubeHost := "dubbo-svc.dubbo-k8s.svc.cluster.local"
	return []protocolCase{
		{
			name:   "dubbo ServiceEntry",
			istio:  dubboServiceEntry,
			client: client, server: seProvider,
			outbound: dubboVIP + "_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", dubboHost)),
			checkInbound:  dubboServerSide(amodel.InboundClusterName(20880)),
		},
		{
			name:   "dubbo Kubernetes Service",
			kube:   dubboKubeService(20880),
			client: client, server: kubeProvider,
			outbound: "10.96.0.20_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", kubeHost)),
			checkInbound:  dubboServerSide(amodel.InboundClusterName(20880)),
		},
		{
			// The inbound chain is the target port's, which only the Service knows
			// (istiod's synthetic ServiceEntry has no target ports).
			name:   "dubbo Kubernetes Service with a targetPort",
			kube:   dubboKubeService(20881),
			client: client, server: kubeProvider,
			outbound: "10.96.0.20_20880", inboundPort: 20881,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboCatchAll(amodel.OutboundClusterName(20880, "", kubeHost)),
			checkInbound:  dubboServerSide(amodel.InboundClusterName(20881)),
		},
		{
			name:   "dubbo VirtualService 20/80 over subsets",
			istio:  dubboServiceEntry + dubboSubsets,
			client: client, server: seProvider,
			outbound: dubboVIP + "_20880", inboundPort: 20880,
			filter: dubboplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: dubboWeighted(dubboHost, 20880, map[string]uint32{"v1": 20, "v2": 80}),
			// The server side takes everything to its workload.
			checkInbound: dubboServerSide(amodel.InboundClusterName(20880)),
		},
		{
			// Transport and protocol from the annotations; the method match, the
			// 20/80 split and the catch-all on the client; everything to the
			// workload on the server.
			name:   "thrift ServiceEntry",
			istio:  thriftSE.serviceEntry() + subsetsYAML(thriftSE.namespace, thriftSE.host) + virtualServiceYAML(thriftSE.namespace, thriftSE.host, thriftRules(thriftSE.host)),
			client: client, server: thriftSE.seServer(),
			outbound: thriftSE.outbound(), inboundPort: 9090,
			filter: thriftplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: thriftRoutes(thrift.TransportType_FRAMED, thrift.ProtocolType_BINARY, "outbound|9090||hello.thrift.example",
				thriftOutboundRoutes(thriftSE.host, 9090)...),
			checkInbound: thriftRoutes(thrift.TransportType_FRAMED, thrift.ProtocolType_BINARY, "inbound|9090||",
				thriftRoute("", "inbound|9090||")),
			clusters: []string{"outbound|9090|v1|hello.thrift.example", "outbound|9090|v2|hello.thrift.example", "outbound|9090||hello.thrift.example"},
		},
		{
			// The VirtualService names the Service by its short name; the inbound
			// chain is the target port's. The DestinationRule names it in full:
			// istio's fake server parses config without a domain, so it would resolve
			// a short DestinationRule host to thrift-svc.thrift-k8s and build no
			// subset clusters (a real istiod resolves it).
			name:   "thrift Kubernetes Service",
			kube:   thriftKube.kubeService(),
			istio:  subsetsYAML(thriftKube.namespace, thriftKube.kubeHost()) + virtualServiceYAML(thriftKube.namespace, thriftKube.name, thriftRules(thriftKube.name)),
			client: client, server: thriftKube.kubeServer(),
			outbound: thriftKube.outbound(), inboundPort: 9091,
			filter: thriftplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: thriftRoutes(thrift.TransportType_HEADER, thrift.ProtocolType_COMPACT, "outbound|9090||thrift-svc.thrift-k8s.svc.cluster.local",
				thriftOutboundRoutes(thriftKube.kubeHost(), 9090)...),
			checkInbound: thriftRoutes(thrift.TransportType_HEADER, thrift.ProtocolType_COMPACT, "inbound|9091||",
				thriftRoute("", "inbound|9091||")),
			clusters: []string{
				"outbound|9090|v1|thrift-svc.thrift-k8s.svc.cluster.local",
				"outbound|9090|v2|thrift-svc.thrift-k8s.svc.cluster.local",
				"outbound|9090||thrift-svc.thrift-k8s.svc.cluster.local",
			},
		},
		{
			name:   "redis ServiceEntry",
			istio:  redisSE.serviceEntry(),
			client: client, server: redisSE.seServer(),
			outbound: redisSE.outbound(), inboundPort: 6379,
			filter: redisplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: redisCatchAll("outbound|6379||cache.redis.example"),
			checkInbound:  redisCatchAll("inbound|6379||"),
		},
		{
			name:   "redis Kubernetes Service",
			kube:   redisKube.kubeService(),
			client: client, server: redisKube.kubeServer(),
			outbound: redisKube.outbound(), inboundPort: 16379,
			filter: redisplugin.FilterName, replacesTCPProxy: true,
			checkOutbound: redisCatchAll("outbound|6379||redis.redis-k8s.svc.cluster.local"),
			checkInbound:  redisCatchAll("inbound|16379||"),
		},
		{
			name:   "zookeeper ServiceEntry",
			istio:  zookeeperSE.serviceEntry(),
			client: client, server: zookeeperSE.seServer(),
			outbound: zookeeperSE.outbound(), inboundPort: 2181,
			filter:        zookeeperplugin.FilterName,
			checkOutbound: zookeeperStats("zookeeper_outbound_2181_zookeeper_infra_example"),
			checkInbound:  zookeeperStats("zookeeper_inbound_2181_zookeeper_infra_example"),
		},
		{
			// The workloads listen on the ServiceEntry's targetPort.
			name:   "zookeeper ServiceEntry with a targetPort",
			istio:  zookeeperSE.withTargetPort(12181).serviceEntry(),
			client: client, server: zookeeperSE.seServer(),
			outbound: zookeeperSE.outbound(), inboundPort: 12181,
			filter:        zookeeperplugin.FilterName,
			checkOutbound: zookeeperStats("zookeeper_outbound_2181_zookeeper_infra_example"),
			checkInbound:  zookeeperStats("zookeeper_inbound_12181_zookeeper_infra_example"),
		},
		{
			// The inbound stat prefix names the target port.
			name:   "zookeeper Kubernetes Service",
			kube:   zookeeperKube.kubeService(),
			client: client, server: zookeeperKube.kubeServer(),
			outbound: zookeeperKube.outbound(), inboundPort: 12181,
			filter:        zookeeperplugin.FilterName,
			checkOutbound: zookeeperStats("zookeeper_outbound_2181_zookeeper_zk_k8s_svc_cluster_local"),
			checkInbound:  zookeeperStats("zookeeper_inbound_12181_zookeeper_zk_k8s_svc_cluster_local"),
		},
		{
			name:   "kafka ServiceEntry annotated",
			istio:  kafkaSE.kafkaContrib("true").serviceEntry(),
			client: contribBuild(client), server: contribBuild(kafkaSE.seServer()),
			outbound: kafkaSE.outbound(), inboundPort: 9092,
			filter:        kafkaplugin.FilterName,
			checkOutbound: kafkaStats("outbound_9092_kafka_kafka_example"),
			checkInbound:  kafkaStats("inbound_9092_kafka_kafka_example"),
		},
		{
			name:   "kafka Kubernetes Service annotated",
			kube:   kafkaKube.kafkaContrib("true").kubeService(),
			client: contribBuild(client), server: contribBuild(kafkaKube.kubeServer()),
			outbound: kafkaKube.outbound(), inboundPort: 19092,
			filter:        kafkaplugin.FilterName,
			checkOutbound: kafkaStats("outbound_9092_kafka_kafka_k8s_svc_cluster_local"),
			checkInbound:  kafkaStats("inbound_19092_kafka_kafka_k8s_svc_cluster_local"),
		},
		{
			name:   "kafka ServiceEntry by the controller option",
			istio:  kafkaSE.serviceEntry(),
			opts:   plugin.Options{KafkaContribFilter: true},
			client: contribBuild(client), server: contribBuild(kafkaSE.seServer()),
			outbound: kafkaSE.outbound(), inboundPort: 9092,
			filter:        kafkaplugin.FilterName,
			checkOutbound: kafkaStats("outbound_9092_kafka_kafka_example"),
			checkInbound:  kafkaStats("inbound_9092_kafka_kafka_example"),
		},
		{
			// Stock sidecars lack kafka_broker: off by default.
			name:   "kafka ServiceEntry by default",
			istio:  kafkaSE.serviceEntry(),
			client: client, server: kafkaSE.seServer(),
			outbound: kafkaSE.outbound(), inboundPort: 9092,
			filter:  kafkaplugin.FilterName,
			skipped: true, service: "kafka/kafka",
		},
		{
			name:   "kafka Kubernetes Service by default",
			kube:   kafkaKube.kubeService(),
			client: client, server: kafkaKube.kubeServer(),
			outbound: kafkaKube.outbound(), inboundPort: 19092,
			filter:  kafkaplugin.FilterName,
			skipped: true, service: "kafka-k8s/synthetic-kafka",
		},
		{
			// The annotation "false" wins over the controller option.
			name:   "kafka Kubernetes Service annotated false",
			kube:   kafkaKube.kafkaContrib("false").kubeService(),
			opts:   plugin.Options{KafkaContribFilter: true},
			client: client, server: kafkaKube.kubeServer(),
			outbound: kafkaKube.outbound(), inboundPort: 19092,
			filter:  kafkaplugin.FilterName,
			skipped: true, service: "kafka-k8s/synthetic-kafka",
		},
	}
}

// TestProtocolFiltersOnListeners feeds each case's config and its generated
// EnvoyFilters to istiod and checks the listeners it builds for a client sidecar and
// for a workload of the service.
func TestProtocolFiltersOnListeners(t *testing.T) {
	for _, c := range protocolCases() {
		t.Run(c.name, func(t *testing.T) {
			kube := KubeObjects(t, c.kube)
			m := NewWithOptions(t, c.opts, c.istio, kube...)
			if c.skipped {
				checkSkipped(t, c, m, kube)
				return
			}
			if len(m.EnvoyFilters) == 0 {
				t.Fatal("nothing generated")
			}
			for key, skips := range m.Skipped {
				t.Errorf("service %s: %d port(s) skipped: %v", key, len(skips), skips)
			}
			out := m.Listeners(c.client)
			in := m.Listeners(c.server)

			// Outbound: the client's <vip>_<port> listener.
			l := Find(out, c.outbound)
			if l == nil {
				t.Fatalf("client has no listener %s; listeners %v", c.outbound, Names(out))
			}
			checkChains(t, "outbound "+c.outbound, l.GetFilterChains(), c.filter, c.replacesTCPProxy, c.checkOutbound)

			// Inbound: the server's virtualInbound chains for the workload port.
			checkChains(t, "inbound port "+strconv.Itoa(int(c.inboundPort)), InboundChains(in, c.inboundPort), c.filter, c.replacesTCPProxy, c.checkInbound)

			// The client is not a workload of the service: its inbound side is untouched.
			for _, fc := range Find(out, VirtualInbound).GetFilterChains() {
				if Filter(fc, c.filter) != nil {
					t.Errorf("client's virtualInbound chain %q carries %s", fc.GetName(), c.filter)
				}
			}
			// And every patch of every generated EnvoyFilter took effect.
			m.CheckApplied(t, out, in)

			// The routes lead to clusters the client has.
			checkClusters(t, m, c.client, c.clusters...)

			// Control: the same config without our EnvoyFilters, as if istiod had
			// dropped every patch. The listeners exist with tcp_proxy, and
			// CheckApplied reports each patch.
			plain := &Mesh{Server: Istiod(t, c.istio, kube...), EnvoyFilters: m.EnvoyFilters}
			plainOut, plainIn := plain.Listeners(c.client), plain.Listeners(c.server)
			for _, fc := range append(Find(plainOut, c.outbound).GetFilterChains(), InboundChains(plainIn, c.inboundPort)...) {
				if Filter(fc, patch.TCPProxyFilter) == nil {
					t.Errorf("without EnvoyFilters, chain %q has no tcp_proxy: filters %v", fc.GetName(), FilterNames(fc))
				}
			}
			rec := &recorder{TB: t}
			plain.CheckApplied(rec, plainOut, plainIn)
			for _, ef := range m.EnvoyFilters {
				if !rec.mentions(ef.Key()) {
					t.Errorf("CheckApplied did not notice that EnvoyFilter %s was not applied; it reported %q", ef.Key(), rec.errs)
				}
			}
		})
	}
}

// checkClusters requires istiod to send the sidecar p every named cluster.
func checkClusters(t *testing.T, m *Mesh, p Proxy, names ...string) {
	t.Helper()
	if len(names) == 0 {
		return
	}
	have := map[string]bool{}
	for _, cl := range m.Server.Clusters(m.SetupProxy(p)) {
		have[cl.GetName()] = true
	}
	for _, name := range names {
		if !have[name] {
			t.Errorf("istiod sends %s no cluster %s; clusters %v", p.Name, name, slices.Sorted(maps.Keys(have)))
		}
	}
}

// checkSkipped checks a case whose generator leaves the port as plain TCP: the
// translation reports one skip, for the service's port, and generates nothing; no
// listener of the client or the server carries the filter; the outbound listener and
// the inbound chains keep tcp_proxy and are what istiod builds from the same config
// without any EnvoyFilter of ours.
func checkSkipped(t *testing.T, c protocolCase, m *Mesh, kube []runtime.Object) {
	t.Helper()
	if len(m.EnvoyFilters) != 0 {
		t.Errorf("generated %d EnvoyFilters, want none:\n%s", len(m.EnvoyFilters), m.EnvoyFilterYAML)
	}
	_, port, _ := strings.Cut(c.outbound, "_")
	skips := m.Skipped[c.service]
	if len(m.Skipped) != 1 || len(skips) != 1 {
		t.Fatalf("skipped %v, want one port of %s", m.Skipped, c.service)
	}
	var skip *generator.SkipError
	if !errors.As(skips[0], &skip) || skips[0].Service.Key() != c.service || strconv.Itoa(int(skips[0].Port.Number)) != port {
		t.Errorf("skip %v (%T), want a SkipError for %s port %s", skips[0], skips[0].Err, c.service, port)
	}
	plain := &Mesh{Server: Istiod(t, c.istio, kube...)}
	checkAsIstiodBuilds(t, c, m, plain)
}

// checkAsIstiodBuilds requires the listeners m gives c's client and server to carry
// c's filter nowhere, and the client's outbound listener and the server's inbound
// chains of the port, tcp_proxy and all, to be what istiod builds for them from the
// same config without any EnvoyFilter of ours (plain).
func checkAsIstiodBuilds(t *testing.T, c protocolCase, m, plain *Mesh) {
	t.Helper()
	out, in := m.Listeners(c.client), m.Listeners(c.server)
	for _, l := range append(slices.Clone(out), in...) {
		for _, fc := range l.GetFilterChains() {
			if Filter(fc, c.filter) != nil {
				t.Errorf("listener %s chain %q carries %s", l.GetName(), fc.GetName(), c.filter)
			}
		}
	}
	plainOut, plainIn := plain.Listeners(c.client), plain.Listeners(c.server)
	lis := Find(out, c.outbound)
	if lis == nil {
		t.Fatalf("client has no listener %s; listeners %v", c.outbound, Names(out))
	}
	inbound := InboundChains(in, c.inboundPort)
	if len(inbound) == 0 {
		t.Errorf("server has no inbound chain for port %d", c.inboundPort)
	}
	for _, fc := range append(slices.Clone(lis.GetFilterChains()), inbound...) {
		if Filter(fc, patch.TCPProxyFilter) == nil {
			t.Errorf("chain %q has no tcp_proxy: filters %v", fc.GetName(), FilterNames(fc))
		}
	}
	if diff := cmp.Diff(Find(plainOut, c.outbound), lis, protocmp.Transform()); diff != "" {
		t.Errorf("outbound %s differs from istiod's own (-istiod +ours):\n%s", c.outbound, diff)
	}
	if diff := cmp.Diff(InboundChains(plainIn, c.inboundPort), inbound, protocmp.Transform()); diff != "" {
		t.Errorf("inbound chains of port %d differ from istiod's own (-istiod +ours):\n%s", c.inboundPort, diff)
	}
}

// checkChains requires at least one chain and the protocol filter in each: in place of
// tcp_proxy when the filter replaces it, else immediately before tcp_proxy. It runs
// check on each filter.
func checkChains(t *testing.T, where string, chains []*listener.FilterChain, filter string, replaces bool, check func(*testing.T, *listener.Filter)) {
	t.Helper()
	if len(chains) == 0 {
		t.Errorf("%s: no filter chains", where)
		return
	}
	for _, fc := range chains {
		f := Filter(fc, filter)
		if f == nil {
			t.Errorf("%s: chain %q lacks %s: filters %v", where, fc.GetName(), filter, FilterNames(fc))
			continue
		}
		names := FilterNames(fc)
		tcp := slices.Index(names, patch.TCPProxyFilter)
		switch {
		case replaces && tcp >= 0:
			t.Errorf("%s: chain %q still has tcp_proxy: filters %v", where, fc.GetName(), names)
		case !replaces && tcp < 0:
			t.Errorf("%s: chain %q lost tcp_proxy, which must still forward the bytes: filters %v", where, fc.GetName(), names)
		case !replaces && slices.Index(names, filter) != tcp-1:
			t.Errorf("%s: chain %q: %s is not immediately before tcp_proxy: filters %v", where, fc.GetName(), filter, names)
		}
		if err := ValidateFilter(f); err != nil {
			t.Errorf("%s: chain %q: Envoy would reject the filter: %v", where, fc.GetName(), err)
		}
		if check != nil {
			check(t, f)
		}
	}
}

// dubboRoutes decodes a dubbo_proxy filter and returns the routes of its one route
// configuration, after checking the interface.
func dubboRoutes(t *testing.T, f *listener.Filter) []*dubbo.Route {
	t.Helper()
	return dubboRoutesOf(t, f, dubboInterface)
}

// dubboRoutesOf is dubboRoutes for a service of interface iface.
func dubboRoutesOf(t *testing.T, f *listener.Filter, iface string) []*dubbo.Route {
	t.Helper()
	dp := &dubbo.DubboProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(dp); err != nil {
		t.Fatalf("decoding %s: %v", f.GetName(), err)
	}
	rcs := dp.GetMultipleRouteConfig().GetRouteConfig()
	if len(rcs) != 1 {
		t.Fatalf("DubboProxy has %d route configurations, want 1: %v", len(rcs), dp)
	}
	if rcs[0].GetInterface() != iface {
		t.Errorf("interface %q, want %q", rcs[0].GetInterface(), iface)
	}
	return rcs[0].GetRoutes()
}

// dubboCatchAll wants exactly one route, to cluster.
func dubboCatchAll(cluster string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		routes := dubboRoutes(t, f)
		if len(routes) != 1 || routes[0].GetRoute().GetCluster() != cluster {
			t.Errorf("routes %v, want one route to %s", routes, cluster)
		}
	}
}

// dubboServerSide wants the server side's one route of every interface, to cluster.
func dubboServerSide(cluster string) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		routes := dubboRoutesOf(t, f, dubboplugin.AnyInterface)
		if len(routes) != 1 || routes[0].GetRoute().GetCluster() != cluster {
			t.Errorf("routes %v, want one route to %s", routes, cluster)
		}
	}
}

// dubboWeighted wants a first route that splits over the host's subsets with the
// given weights, and a last route to the host's own cluster.
func dubboWeighted(host string, port uint32, weights map[string]uint32) func(*testing.T, *listener.Filter) {
	return func(t *testing.T, f *listener.Filter) {
		t.Helper()
		routes := dubboRoutes(t, f)
		if len(routes) == 0 {
			t.Fatal("no routes")
		}
		got := map[string]uint32{}
		for _, c := range routes[0].GetRoute().GetWeightedClusters().GetClusters() {
			got[c.GetName()] = c.GetWeight().GetValue()
		}
		want := map[string]uint32{}
		for subset, w := range weights {
			want[amodel.OutboundClusterName(port, subset, host)] = w
		}
		if len(got) != len(want) {
			t.Errorf("first route's weighted clusters %v, want %v", got, want)
		}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("weighted cluster %s: weight %d, want %d (all: %v)", name, got[name], w, got)
			}
		}
		if last := routes[len(routes)-1].GetRoute().GetCluster(); last != amodel.OutboundClusterName(port, "", host) {
			t.Errorf("last route goes to %q, want the catch-all %s", last, amodel.OutboundClusterName(port, "", host))
		}
	}
}

// recorder collects the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) mentions(s string) bool {
	for _, e := range r.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// TestSyntheticServiceEntryMatchesIstiod holds our reading of a Kubernetes Service
// (used by generate and the golden tests) to istiod's own conversion.
func TestSyntheticServiceEntryMatchesIstiod(t *testing.T) {
	for _, svc := range KubeObjects(t, `apiVersion: v1
kind: Service
metadata: {name: provider, namespace: dubbo}
spec:
  clusterIP: 10.96.0.20
  selector: {app: provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: 20881}
  - {name: http-web, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: dubbo}
spec:
  clusterIP: None
  selector: {app: headless}
  ports:
  - {name: tcp-dubbo, port: 20880}
---
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: dubbo
  annotations: {networking.istio.io/exportTo: "., team"}
spec:
  clusterIP: 10.96.0.21
  ports:
  - {name: tcp-redis, port: 6379}
`) {
		svc := svc.(*corev1.Service)
		want := IstiodServiceEntry(svc)
		got := manifest.SyntheticServiceEntry(svc, DomainSuffix)
		if got.Name != want.Name || got.Namespace != want.Namespace {
			t.Errorf("%s: name %s/%s, istiod %s/%s", svc.Name, got.Namespace, got.Name, want.Namespace, want.Name)
		}
		// istiod lists exportTo in map order.
		sortExport := protocmp.SortRepeatedFields(&networking.ServiceEntry{}, "export_to")
		if diff := cmp.Diff(want.Spec, got.Spec, protocmp.Transform(), sortExport); diff != "" {
			t.Errorf("%s: spec differs from istiod's (-istiod +ours):\n%s", svc.Name, diff)
		}
	}
}
