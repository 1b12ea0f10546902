// Package redis generates Envoy's redis_proxy filter for `tcp-redis` ports, configured
// from the RedisService and RedisDestination bound to the service (the first of each
// by namespace/name; the translation reports the others as Conflict).
//
// Client side (outbound): redis_proxy replaces tcp_proxy on every VIP listener of the
// port. It routes keys by prefix (spec.redis; a route without match replaces the
// catch-all, which otherwise sends every key to the service's own cluster), mirrors,
// injects faults and takes the connection settings and the password clients must
// give (spec.settings). Route and mirror hosts are completed in the RedisService's
// namespace and must be services with a tcp-redis port; without a port, a host's
// single tcp-redis port is used (the current port for the service's own hosts).
//
// Server side (inbound): redis_proxy replaces tcp_proxy on the workload's port, every
// key to the local workload, with the op timeout and command stats of spec.settings.
// Routes, mirrors and faults are client-side concepts and are not repeated there:
// traffic that reaches a server was already routed by the client's sidecar.
//
// RedisDestination patches Istio's outbound clusters of each bound host and port (all
// subsets), in the port's outbound EnvoyFilter:
//   - PROXY mode (default) MERGEs connect_timeout, tcp_keepalive and the upstream
//     auth (typed_extension_protocol_options["envoy.filters.network.redis_proxy"]).
//     maxConnections needs more than MERGE: Istio gives every outbound cluster a
//     circuit-breaker threshold of its own, MERGE appends ours after it, and Envoy
//     reads only the first threshold of a priority. The patch then uses
//     MERGE_AND_REPLACE_LIST (istiod 1.31 and later), which replaces the thresholds
//     with ours: maxConnections plus Istio's defaults for the other limits. For an
//     older istiod (generator.Context.Istiod) the RedisDestination fails with
//     IstiodTooOld instead: that istiod cannot decode the operation.
//   - CLUSTER mode REMOVEs Istio's clusters and ADDs one Redis Cluster cluster per
//     host (cluster_type envoy.clusters.redis, lb_policy CLUSTER_PROVIDED, seeds from
//     discoveryEndpoints or the host and port), outbound|<port>||<host>. MERGE cannot
//     make one: Istio's cluster of a STATIC ServiceEntry or a Kubernetes Service is
//     EDS, and merging cluster_type clears `type` but keeps eds_cluster_config, which
//     Envoy rejects ("eds_cluster_config set in a non-EDS cluster"). The added cluster
//     has no Istio mTLS (the hosts it learns from CLUSTER SLOTS carry no mTLS
//     metadata anyway): the servers must accept plaintext (PERMISSIVE). The client
//     connects to the pods the slot map names, so the server side keeps tcp_proxy: its
//     redis_proxy would not pass CLUSTER SLOTS on, and clients' cluster discovery
//     needs it. No inbound filter is generated in CLUSTER mode.
//
// Server auth (RedisDestination, PROXY mode): the client's sidecar authenticates to
// each upstream connection with the credentials. That connection ends at the
// server's sidecar, so the inbound redis_proxy requires the same credentials from
// clients (downstream auth) and the inbound cluster inbound|<number>|| of each number
// the workloads serve the port on (the target port, and those WorkloadEntries' ports
// maps move it to) gets the same protocol options, so that the server's sidecar authenticates to the local
// server. Clients without a sidecar then authenticate with the server's own
// credentials, as they would without a mesh. An application's own AUTH ends at its
// sidecar (spec.settings.auth of the RedisService), never at the server.
//
// Credentials come from a Secret in the object's namespace or from the object, and
// end up inline in the EnvoyFilter (Envoy's redis auth has no SDS). Errors name the
// Secret and key, never a value.
package redis

import (
	"errors"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

const (
	// FilterName is Envoy's name of the Redis network filter.
	FilterName = "envoy.filters.network.redis_proxy"
	// DefaultOpTimeout bounds each command; Envoy requires a timeout, and a Redis
	// command that takes longer than this is better failed than left hanging.
	DefaultOpTimeout = 5 * time.Second
)

// New returns the Redis generator.
func New() generator.Generator {
	return generator.Func(generate)
}

func generate(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	proxy, dest, err := resolve(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	outboundPatches, inboundPatches, err := clusterPatches(svc, port, dest)
	if err != nil {
		return nil, err
	}
	b, err := patch.NewBuilder(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	dirs := []patch.Direction{patch.Outbound, patch.Inbound}
	if dest.mode() == redisspec.ModeCluster {
		dirs = dirs[:1] // no inbound redis_proxy: see the package doc
	}
	err = b.ListenerFilter(patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		return proxyFilter(l, proxy, dest)
	}, dirs...)
	// A service with neither addresses nor workloads has no listener to patch; with
	// cluster patches to make it still gets those.
	if err != nil && (!errors.Is(err, patch.ErrNoListener) || len(outboundPatches) == 0) {
		return nil, err
	}
	if err := b.Add(patch.Outbound, outboundPatches...); err != nil {
		return nil, err
	}
	if err := b.Add(patch.Inbound, inboundPatches...); err != nil {
		return nil, err
	}
	return b.Filters(), nil
}

// resolve turns the RedisService and the RedisDestination in effect for svc (the
// first of each by namespace/name) into the settings of one of its ports. Both are
// resolved even when one fails, so that each failing object is told its own error
// (see generator.ObjectError).
func resolve(ctx *generator.Context, svc *model.Service, port *model.Port) (*proxyConfig, *destinationConfig, error) {
	var rs *model.Config[*redisspec.RedisServiceSpec]
	var rd *model.Config[*redisspec.RedisDestinationSpec]
	var errs []error
	if len(svc.RedisServices) > 0 {
		rs = svc.RedisServices[0]
	}
	if len(svc.RedisDestinations) > 0 {
		rd = svc.RedisDestinations[0]
	}
	proxy, err := resolveService(ctx, svc, port, rs)
	if err != nil {
		errs = append(errs, objectError(model.KindRedisService, rs.Namespace, rs.Name, err))
	}
	dest, err := resolveDestination(ctx, svc, rd)
	if err != nil {
		errs = append(errs, objectError(model.KindRedisDestination, rd.Namespace, rd.Name, err))
	}
	return proxy, dest, errors.Join(errs...)
}

// proxyFilter is the redis_proxy of one listener: outbound with everything the
// RedisService says, inbound with the workload as the only destination.
func proxyFilter(l *patch.Listener, cfg *proxyConfig, dest *destinationConfig) (*patch.Filter, error) {
	p := &redis.RedisProxy{StatPrefix: l.StatPrefix}
	catchAll := &redis.RedisProxy_PrefixRoutes_Route{Cluster: l.Cluster}
	var auth *credentials
	if l.Direction == patch.Outbound {
		p.Settings = cfg.outbound
		p.PrefixRoutes = &redis.RedisProxy_PrefixRoutes{Routes: cfg.routes, CaseInsensitive: cfg.caseInsensitive}
		if cfg.catchAll != nil {
			catchAll = cfg.catchAll
		}
		p.Faults = cfg.faults
		auth = cfg.auth
	} else {
		p.Settings = cfg.inbound
		p.PrefixRoutes = &redis.RedisProxy_PrefixRoutes{}
		if dest != nil {
			auth = dest.auth // what the clients' sidecars send: see the package doc
		}
	}
	p.PrefixRoutes.CatchAllRoute = catchAll
	if auth != nil {
		p.DownstreamAuthPasswords = []*core.DataSource{auth.password}
		p.DownstreamAuthUsername = auth.username
	}
	return patch.NetworkFilter(FilterName, p), nil
}
