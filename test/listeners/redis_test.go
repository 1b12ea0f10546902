package listeners

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	amodel "aeraki.io/aeraki/pkg/model"
	redisplugin "aeraki.io/aeraki/plugin/redis"
)

// redisIstioConfig is what istiod reads: a Redis service with one workload, a service
// to route to, a Redis Cluster service and a service that probes plain MERGE patches.
const redisIstioConfig = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: redis}
spec:
  hosts: [cache.redis.example]
  addresses: [240.240.30.1]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: cache}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: cache, namespace: redis}
spec:
  address: 10.0.0.10
  labels: {app: cache}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: users, namespace: redis}
spec:
  hosts: [users.redis.svc.cluster.local]
  addresses: [240.240.30.2]
  ports: [{number: 6390, name: tcp-redis, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shards, namespace: redis}
spec:
  hosts: [shards.redis.example]
  addresses: [240.240.30.3]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.0.0.20}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: probe, namespace: redis}
spec:
  hosts: [probe.redis.example]
  ports: [{number: 6379, name: tcp-probe, protocol: TCP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.0.0.30}]
---
# Hand-written, not generated: what plain MERGE makes of max connections and of
# cluster_type on Istio's (EDS) cluster.
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: probe-merge, namespace: istio-system}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: probe.redis.example, portNumber: 6379}}
    patch:
      operation: MERGE
      value:
        circuitBreakers: {thresholds: [{maxConnections: 7}]}
        lbPolicy: CLUSTER_PROVIDED
        clusterType:
          name: envoy.clusters.redis
          typedConfig: {'@type': type.googleapis.com/envoy.extensions.clusters.redis.v3.RedisClusterConfig}
`

// redisConfig is ours: read by the translation only.
const redisConfig = `
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: redis}
spec:
  host: [cache.redis.example]
  settings:
    auth: {plain: {password: client-pw}}
  redis:
  - match: {key: {prefix: "user:"}}
    route: {host: users}
    mirror: [{route: {host: cache.redis.example}, percentage: 50}]
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: redis}
spec:
  host: cache.redis.example
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 7
        tcpKeepalive: {time: 60s}
      redis:
        auth: {plain: {username: app, password: server-pw}}
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: shards, namespace: redis}
spec:
  host: shards.redis.example
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 3}
      redis: {mode: CLUSTER}
`

// TestRedisOnIstiod feeds the Redis generator's EnvoyFilters (RedisServices and
// RedisDestinations are not Istio config, so Mesh cannot take them) to istiod's own
// config generation and checks what a client sidecar and the server's sidecar get:
// redis_proxy with the routes on the client's listener, the RedisDestination's
// settings in effect on the client's cluster, a Redis Cluster cluster Envoy accepts,
// and the server side accepting the client sidecar's AUTH. It also pins why the
// generator does not use plain MERGE for max connections and cluster mode.
func TestRedisOnIstiod(t *testing.T) {
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(redisIstioConfig+"\n---\n"+redisConfig), "config"); len(errs) > 0 {
		t.Fatal(errs)
	}
	ctx, services := generatortest.Push(t, objs.Snapshot(DomainSuffix))
	var efs []*amodel.EnvoyFilter
	for _, svc := range services {
		for _, port := range svc.Ports {
			if port.Protocol != amodel.Redis {
				continue
			}
			got, err := redisplugin.New().Generate(ctx, svc, port)
			if err != nil {
				t.Fatalf("%s: %v", svc.Key(), err)
			}
			efs = append(efs, got...)
		}
	}
	generatortest.Validate(t, efs)
	var buf bytes.Buffer
	if err := manifest.WriteEnvoyFilters(&buf, efs); err != nil {
		t.Fatal(err)
	}
	m := &Mesh{Server: Istiod(t, redisIstioConfig+"\n---\n"+buf.String())}
	s := m.Server
	client := m.SetupProxy(Proxy{Name: "client", Namespace: "default", IP: "10.0.0.99", Labels: map[string]string{"app": "client"}})
	server := m.SetupProxy(Proxy{Name: "cache-0", Namespace: "redis", IP: "10.0.0.10", Labels: map[string]string{"app": "cache"}})

	// Client listener: redis_proxy with the routes, mirror and downstream auth.
	out := redisProxyOn(t, findListener(t, s.Listeners(client), "240.240.30.1_6379").GetFilterChains()...)
	routes := out.GetPrefixRoutes()
	if len(routes.GetRoutes()) != 1 || routes.GetRoutes()[0].GetPrefix() != "user:" || routes.GetRoutes()[0].GetCluster() != "outbound|6390||users.redis.svc.cluster.local" ||
		routes.GetRoutes()[0].GetRequestMirrorPolicy()[0].GetCluster() != "outbound|6379||cache.redis.example" ||
		routes.GetCatchAllRoute().GetCluster() != "outbound|6379||cache.redis.example" {
		t.Errorf("client redis_proxy routes: %v", routes)
	}
	if len(out.GetDownstreamAuthPasswords()) != 1 || out.GetDownstreamAuthPasswords()[0].GetInlineString() != "client-pw" {
		t.Errorf("client redis_proxy downstream auth: %v", out.GetDownstreamAuthPasswords())
	}

	clusters := s.Clusters(client)
	// Client cluster: Istio's EDS cluster with the RedisDestination's settings, max
	// connections in the first (the effective) threshold.
	c := findCluster(t, clusters, "outbound|6379||cache.redis.example")
	if c.GetType() != cluster.Cluster_EDS || c.GetEdsClusterConfig() == nil {
		t.Errorf("cache cluster is no longer Istio's EDS cluster: %v", c.GetClusterDiscoveryType())
	}
	if th := c.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxConnections().GetValue() != 7 || th[0].GetMaxRequests().GetValue() != 1<<32-1 {
		t.Errorf("cache cluster thresholds %v: Envoy uses the first threshold of a priority, it must carry max connections 7", th)
	}
	if ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka.GetKeepaliveTime().GetValue() != 60 {
		t.Errorf("cache cluster keepalive %v", ka)
	}
	if opts := protocolOptionsOf(t, c); opts.GetAuthPassword().GetInlineString() != "server-pw" || opts.GetAuthUsername().GetInlineString() != "app" {
		t.Errorf("cache cluster redis protocol options %v", opts)
	}
	validateCluster(t, c)

	// Redis Cluster: one cluster of that name, of type envoy.clusters.redis, without
	// EDS left-overs, seeded with the service's host and port.
	shards := findCluster(t, clusters, "outbound|6379||shards.redis.example")
	if n := countClusters(clusters, shards.GetName()); n != 1 {
		t.Errorf("%d clusters named %s", n, shards.GetName())
	}
	if shards.GetClusterType().GetName() != redisplugin.RedisClusterType || shards.GetEdsClusterConfig() != nil || shards.GetLbPolicy() != cluster.Cluster_CLUSTER_PROVIDED {
		t.Errorf("shards cluster: type %v, eds_cluster_config %v, lb_policy %v", shards.GetClusterDiscoveryType(), shards.GetEdsClusterConfig(), shards.GetLbPolicy())
	}
	if th := shards.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxConnections().GetValue() != 3 {
		t.Errorf("shards cluster thresholds %v", th)
	}
	seed := shards.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if seed.GetAddress() != "shards.redis.example" || seed.GetPortValue() != 6379 {
		t.Errorf("shards seed %v", seed)
	}
	validateCluster(t, shards)

	// Plain MERGE, for the record: the threshold is appended after Istio's (so Envoy
	// ignores it), and cluster_type clears `type` but keeps eds_cluster_config, which
	// Envoy rejects ("eds_cluster_config set in a non-EDS cluster").
	probe := findCluster(t, clusters, "outbound|6379||probe.redis.example")
	if th := probe.GetCircuitBreakers().GetThresholds(); len(th) != 2 || th[0].GetMaxConnections().GetValue() == 7 {
		t.Errorf("MERGE of a threshold: %v; expected it appended after Istio's", th)
	}
	if probe.GetClusterType() == nil || probe.GetEdsClusterConfig() == nil || probe.GetType() == cluster.Cluster_EDS {
		t.Errorf("MERGE of cluster_type onto EDS: type %v, eds_cluster_config %v; expected a cluster_type with EDS config left over",
			probe.GetClusterDiscoveryType(), probe.GetEdsClusterConfig())
	}

	// Server side: redis_proxy on the workload port accepts the client sidecar's AUTH,
	// and the inbound cluster authenticates to the local server.
	serverListeners := s.Listeners(server)
	findListener(t, serverListeners, VirtualInbound)
	in := redisProxyOn(t, InboundChains(serverListeners, 6379)...)
	if len(in.GetDownstreamAuthPasswords()) != 1 || in.GetDownstreamAuthPasswords()[0].GetInlineString() != "server-pw" ||
		in.GetDownstreamAuthUsername().GetInlineString() != "app" || len(in.GetPrefixRoutes().GetRoutes()) != 0 {
		t.Errorf("server redis_proxy: auth %v %v, routes %v", in.GetDownstreamAuthUsername(), in.GetDownstreamAuthPasswords(), in.GetPrefixRoutes())
	}
	inbound := findCluster(t, s.Clusters(server), "inbound|6379||")
	if opts := protocolOptionsOf(t, inbound); opts.GetAuthPassword().GetInlineString() != "server-pw" || opts.GetAuthUsername().GetInlineString() != "app" {
		t.Errorf("inbound cluster redis protocol options %v", opts)
	}
	validateCluster(t, inbound)
}

// findListener returns the listener named name, and fails t if there is none.
func findListener(t *testing.T, ls []*listener.Listener, name string) *listener.Listener {
	t.Helper()
	l := Find(ls, name)
	if l == nil {
		t.Fatalf("no listener %s in %v", name, Names(ls))
	}
	return l
}

func findCluster(t *testing.T, cs []*cluster.Cluster, name string) *cluster.Cluster {
	t.Helper()
	var names []string
	for _, c := range cs {
		if c.GetName() == name {
			return c
		}
		names = append(names, c.GetName())
	}
	t.Fatalf("no cluster %s in %v", name, names)
	return nil
}

func countClusters(cs []*cluster.Cluster, name string) int {
	return len(slices.DeleteFunc(slices.Clone(cs), func(c *cluster.Cluster) bool { return c.GetName() != name }))
}

// redisProxyOn decodes the redis_proxy of every chain (at least one), which must be
// the same everywhere and have replaced tcp_proxy.
func redisProxyOn(t *testing.T, chains ...*listener.FilterChain) *redis.RedisProxy {
	t.Helper()
	if len(chains) == 0 {
		t.Fatal("no filter chain")
	}
	var first *redis.RedisProxy
	for _, fc := range chains {
		var got *redis.RedisProxy
		for _, f := range fc.GetFilters() {
			switch f.GetName() {
			case "envoy.filters.network.tcp_proxy":
				t.Errorf("chain %q still has tcp_proxy", fc.GetName())
			case redisplugin.FilterName:
				got = &redis.RedisProxy{}
				if err := f.GetTypedConfig().UnmarshalTo(got); err != nil {
					t.Fatal(err)
				}
				if err := got.ValidateAll(); err != nil {
					t.Errorf("chain %q: %v", fc.GetName(), err)
				}
			}
		}
		if got == nil {
			t.Fatalf("chain %q has no redis_proxy", fc.GetName())
		}
		if first == nil {
			first = got
		} else if !proto.Equal(first, got) {
			t.Errorf("chains differ: %v / %v", first, got)
		}
	}
	return first
}

func protocolOptionsOf(t *testing.T, c *cluster.Cluster) *redis.RedisProtocolOptions {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()[redisplugin.FilterName]
	if a == nil {
		t.Errorf("cluster %s has no redis protocol options", c.GetName())
		return nil
	}
	opts := &redis.RedisProtocolOptions{}
	if err := a.UnmarshalTo(opts); err != nil {
		t.Fatal(err)
	}
	return opts
}

// validateCluster checks a cluster as Envoy would, with the redis typed configs in it,
// and the rule protoc-gen-validate cannot express: eds_cluster_config only on EDS.
func validateCluster(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	if err := c.ValidateAll(); err != nil {
		t.Errorf("cluster %s: %v", c.GetName(), err)
	}
	if c.GetEdsClusterConfig() != nil && c.GetType() != cluster.Cluster_EDS {
		t.Errorf("cluster %s: eds_cluster_config set in a non-EDS cluster", c.GetName())
	}
	inner := []*anypb.Any{c.GetClusterType().GetTypedConfig()}
	for _, a := range c.GetTypedExtensionProtocolOptions() {
		inner = append(inner, a)
	}
	for _, a := range inner {
		if a == nil {
			continue
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("cluster %s: %v", c.GetName(), err)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				t.Errorf("cluster %s: %v", c.GetName(), err)
			}
		}
	}
}
