// Package redis generates Envoy's redis_proxy filter for `tcp-redis` ports.
//
// This first version gives every service the default that needs no configuration:
// redis_proxy in tcp_proxy's place, every key routed to the service's own cluster, and
// an operation timeout. RedisService and RedisDestination (key-prefix routes, mirrors,
// faults, auth, cluster mode, connection pools) build on it.
package redis

import (
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/model"
)

const (
	// FilterName is Envoy's name of the Redis network filter.
	FilterName = "envoy.filters.network.redis_proxy"
	// DefaultOpTimeout bounds each command; Envoy requires a timeout, and a Redis
	// command that takes longer than this is better failed than left hanging.
	DefaultOpTimeout = 5 * time.Second
)

// New returns the Redis generator.
func New() envoyfilter.Generator {
	return envoyfilter.GeneratorFunc(generate)
}

func generate(ctx *envoyfilter.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	return envoyfilter.ListenerFilters(ctx, svc, port, envoyfilter.ReplaceTCPProxy, func(l *envoyfilter.Listener) (*listener.Filter, error) {
		return envoyfilter.NetworkFilter(FilterName, &redis.RedisProxy{
			StatPrefix: l.StatPrefix,
			Settings:   &redis.RedisProxy_ConnPoolSettings{OpTimeout: durationpb.New(DefaultOpTimeout)},
			PrefixRoutes: &redis.RedisProxy_PrefixRoutes{
				CatchAllRoute: &redis.RedisProxy_PrefixRoutes_Route{Cluster: l.Cluster},
			},
		})
	})
}
