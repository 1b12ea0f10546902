package redis

import (
	"fmt"
	"math"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"istio.io/istio/pkg/config/host"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// destinations resolves route and mirror destinations of a RedisService to Istio's
// outbound clusters.
type destinations struct {
	ctx       *generator.Context
	svc       *model.Service
	port      *model.Port
	namespace string // the RedisService's: completes short hosts
}

func (d *destinations) route(r *redisspec.RedisRoute, where string) (*redis.RedisProxy_PrefixRoutes_Route, error) {
	cluster, err := d.cluster(r.Route, where+".route")
	if err != nil {
		return nil, err
	}
	route := &redis.RedisProxy_PrefixRoutes_Route{Cluster: cluster}
	for j := range r.Mirror {
		m := &r.Mirror[j]
		at := fmt.Sprintf("%s.mirror[%d]", where, j)
		mc, err := d.cluster(m.Route, at+".route")
		if err != nil {
			return nil, err
		}
		policy := &redis.RedisProxy_PrefixRoutes_Route_RequestMirrorPolicy{Cluster: mc, ExcludeReadCommands: m.ExcludeReadCommands}
		if m.Percentage != nil { // unset: every command
			f, err := fraction(m.Percentage, at+".percentage")
			if err != nil {
				return nil, err
			}
			policy.RuntimeFraction = f
		}
		route.RequestMirrorPolicy = append(route.RequestMirrorPolicy, policy)
	}
	return route, nil
}

// cluster is Istio's outbound cluster of a destination: outbound|<port>||<host>, the
// host completed in the RedisService's namespace. The port is the destination's,
// else the current one when the host is the service's own, else the single tcp-redis
// port of the host's service.
func (d *destinations) cluster(dest redisspec.RouteDestination, where string) (string, error) {
	h := string(model.ResolveHost(dest.Host, d.namespace, d.ctx.DomainSuffix))
	if h == "" {
		return "", invalid("%s.host is empty", where)
	}
	if host.Name(h).IsWildCarded() {
		return "", invalid("%s.host %s is a wildcard: name one service", where, h)
	}
	target := d.ctx.Service(h)
	self := slices.Contains(d.svc.Hosts, h)
	if self {
		target = d.svc
	}
	if target == nil {
		return "", invalid("%s.host %s is not a known service", where, h)
	}
	var ports []uint32
	for _, p := range target.Ports {
		if p.Protocol == model.Redis {
			ports = append(ports, p.Number)
		}
	}
	var port uint32
	switch {
	case dest.Port < 0 || dest.Port > math.MaxUint16:
		return "", invalid("%s.port %d is not a port number", where, dest.Port)
	case dest.Port > 0:
		port = uint32(dest.Port)
		if !slices.Contains(ports, port) {
			return "", invalid("%s: port %d of %s is not a tcp-redis port (tcp-redis ports: %v)", where, port, h, ports)
		}
	case self:
		port = d.port.Number
	case len(ports) == 1:
		port = ports[0]
	case len(ports) == 0:
		return "", invalid("%s.host %s is not a Redis service: it has no tcp-redis port", where, h)
	default:
		return "", invalid("%s.host %s has several tcp-redis ports %v: set port", where, h, ports)
	}
	return model.OutboundClusterName(port, "", h), nil
}

// fraction turns a percentage (0 to 100, fractions allowed) into a runtime fraction
// in millionths, which keeps percentages such as 12.5 or 0.0001 exact.
func fraction(p *redisspec.Percent, where string) (*core.RuntimeFractionalPercent, error) {
	v := 100.0
	if p != nil {
		v = p.Value
	}
	if math.IsNaN(v) || v < 0 || v > 100 {
		return nil, invalid("%s %v is not between 0 and 100", where, v)
	}
	return &core.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(v * 10000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}}, nil
}
