package redis

import (
	"fmt"
	"math"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	redisclusters "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/redis/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

const (
	// RedisClusterType is Envoy's cluster extension for Redis Cluster; Istio's
	// sidecar build has it.
	RedisClusterType = "envoy.clusters.redis"
	// IstioConnectTimeout is Istio's default connect timeout (MeshConfig
	// connectTimeout), for the clusters CLUSTER mode adds when the
	// RedisDestination sets none.
	IstioConnectTimeout = 10 * time.Second
)

// mode is the RedisDestination's mode; PROXY without one.
func (d *destinationConfig) mode() redisspec.RedisMode {
	if d != nil && d.clusterMode {
		return redisspec.ModeCluster
	}
	return redisspec.ModeProxy
}

// clusterPatches are the CLUSTER patches a RedisDestination makes for one service
// port: of the outbound clusters of every bound host, and of the inbound cluster
// when the servers need auth (see the package doc).
func clusterPatches(svc *model.Service, port *model.Port, dest *destinationConfig) (outbound, inbound []*networking.EnvoyFilter_EnvoyConfigObjectPatch, err error) {
	if dest == nil {
		return nil, nil, nil
	}
	for _, h := range dest.hosts {
		match := &networking.EnvoyFilter_ClusterMatch{Service: h, PortNumber: port.Number}
		var ps []*networking.EnvoyFilter_EnvoyConfigObjectPatch
		if dest.clusterMode {
			ps, err = redisCluster(match, model.OutboundClusterName(port.Number, "", h), dest, h, port.Number)
		} else {
			ps, err = mergeSettings(match, dest)
		}
		if err != nil {
			return nil, nil, err
		}
		outbound = append(outbound, ps...)
	}
	if dest.auth != nil && !dest.clusterMode && svc.WorkloadSelector != nil && port.TargetPort != 0 {
		opts, err := protocolOptions(dest.auth)
		if err != nil {
			return nil, nil, err
		}
		// Each number the workloads serve the port on has an inbound cluster, as
		// it has a filter chain with the inbound redis_proxy requiring the auth.
		for _, number := range port.InboundNumbers() {
			p, err := patch.ClusterPatch(networking.EnvoyFilter_SIDECAR_INBOUND,
				&networking.EnvoyFilter_ClusterMatch{Name: model.InboundClusterName(number)},
				networking.EnvoyFilter_Patch_MERGE,
				&cluster.Cluster{TypedExtensionProtocolOptions: opts})
			if err != nil {
				return nil, nil, err
			}
			inbound = append(inbound, p)
		}
	}
	return outbound, inbound, nil
}

// mergeSettings merges the settings into Istio's clusters; nothing when there are none.
func mergeSettings(match *networking.EnvoyFilter_ClusterMatch, dest *destinationConfig) ([]*networking.EnvoyFilter_EnvoyConfigObjectPatch, error) {
	c := &cluster.Cluster{ConnectTimeout: dest.connectTimeout}
	if err := dest.apply(c); err != nil {
		return nil, err
	}
	if proto.Size(c) == 0 {
		return nil, nil
	}
	op := networking.EnvoyFilter_Patch_MERGE
	if c.CircuitBreakers != nil {
		// MERGE would append our threshold after Istio's, and Envoy reads the first.
		op = networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST
	}
	p, err := patch.ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, match, op, c)
	if err != nil {
		return nil, err
	}
	return []*networking.EnvoyFilter_EnvoyConfigObjectPatch{p}, nil
}

// redisCluster replaces Istio's clusters of a host's port with a Redis Cluster
// cluster of the same name.
func redisCluster(match *networking.EnvoyFilter_ClusterMatch, name string, dest *destinationConfig, host string, port uint32) ([]*networking.EnvoyFilter_EnvoyConfigObjectPatch, error) {
	typed, err := anypb.New(&redisclusters.RedisClusterConfig{})
	if err != nil {
		return nil, err
	}
	seeds := dest.seeds
	if len(seeds) == 0 {
		seeds = []*core.SocketAddress{{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}
	}
	endpoints := &endpoint.LocalityLbEndpoints{}
	for _, s := range seeds {
		endpoints.LbEndpoints = append(endpoints.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: s}},
			}},
		})
	}
	c := &cluster.Cluster{
		Name:           name,
		ConnectTimeout: dest.connectTimeout,
		ClusterDiscoveryType: &cluster.Cluster_ClusterType{ClusterType: &cluster.Cluster_CustomClusterType{
			Name: RedisClusterType, TypedConfig: typed,
		}},
		LbPolicy:       cluster.Cluster_CLUSTER_PROVIDED,
		LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{endpoints}},
		// Istio's defaults, as on its own clusters: Envoy's (1024 connections...) are lower.
		CircuitBreakers: &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{istioThresholds(nil)}},
	}
	if c.ConnectTimeout == nil {
		c.ConnectTimeout = durationpb.New(IstioConnectTimeout)
	}
	if err := dest.apply(c); err != nil {
		return nil, err
	}
	remove, err := patch.ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, match, networking.EnvoyFilter_Patch_REMOVE, nil)
	if err != nil {
		return nil, err
	}
	add, err := patch.ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_ADD, c)
	if err != nil {
		return nil, err
	}
	return []*networking.EnvoyFilter_EnvoyConfigObjectPatch{remove, add}, nil
}

// apply sets the connection settings both modes share on c.
func (d *destinationConfig) apply(c *cluster.Cluster) error {
	if d.maxConnections != nil {
		c.CircuitBreakers = &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{istioThresholds(d.maxConnections)}}
	}
	if d.keepalive != nil {
		c.UpstreamConnectionOptions = &cluster.UpstreamConnectionOptions{TcpKeepalive: d.keepalive}
	}
	if d.auth != nil {
		opts, err := protocolOptions(d.auth)
		if err != nil {
			return err
		}
		c.TypedExtensionProtocolOptions = opts
	}
	return nil
}

// istioThresholds are the circuit-breaker limits Istio gives every cluster
// (unlimited), with maxConnections when set, as a DestinationRule would set it.
func istioThresholds(maxConnections *uint32) *cluster.CircuitBreakers_Thresholds {
	t := &cluster.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
	}
	if maxConnections != nil {
		t.MaxConnections = wrapperspb.UInt32(*maxConnections)
	}
	return t
}

// protocolOptions make a cluster's connections authenticate to Redis.
func protocolOptions(auth *credentials) (map[string]*anypb.Any, error) {
	opts, err := anypb.New(&redis.RedisProtocolOptions{AuthPassword: auth.password, AuthUsername: auth.username})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	return map[string]*anypb.Any{FilterName: opts}, nil
}
