package redis

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/istio/pkg/config/host"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// destinationConfig is what a RedisDestination gives the clusters of one service port.
type destinationConfig struct {
	// hosts are the service's hosts the RedisDestination binds: their clusters are patched.
	hosts          []string
	connectTimeout *durationpb.Duration
	maxConnections *uint32
	keepalive      *core.TcpKeepalive
	auth           *credentials
	clusterMode    bool
	// seeds are the discovery endpoints of a CLUSTER mode proxy; nil for the default
	// (each host and the port).
	seeds []*core.SocketAddress
}

// resolveDestination turns the RedisDestination bound to a service (nil for none)
// into the settings of the clusters of one of its ports. The generator and Check
// both call it.
func resolveDestination(ctx *generator.Context, svc *model.Service, rd *model.Config[*redisspec.RedisDestinationSpec]) (*destinationConfig, error) {
	cfg, err := resolveDestinationSpec(ctx, svc, rd)
	if err != nil || cfg == nil {
		return cfg, err
	}
	// PROXY mode caps connections with MERGE_AND_REPLACE_LIST (see mergeSettings),
	// which an older istiod cannot decode: its EnvoyFilter list would fail, freezing
	// every EnvoyFilter of the mesh for it. The service then fails, keeping what was
	// written before.
	if cfg.maxConnections != nil && !cfg.clusterMode && !ctx.Istiod.Version.AtLeast(model.Istio131) {
		return nil, istiodTooOld("spec.trafficPolicy.connectionPool.tcp.maxConnections needs istiod %s or later "+
			"(the EnvoyFilter operation MERGE_AND_REPLACE_LIST); the connected istiod is %s", model.Istio131, ctx.Istiod)
	}
	return cfg, nil
}

func resolveDestinationSpec(ctx *generator.Context, svc *model.Service, rd *model.Config[*redisspec.RedisDestinationSpec]) (*destinationConfig, error) {
	if rd == nil {
		return nil, nil
	}
	if rd.Spec.Unreadable != "" {
		return nil, unreadable(rd.Spec.Unreadable)
	}
	cfg := &destinationConfig{hosts: boundHosts(ctx, svc, model.Object{Namespace: rd.Namespace, Spec: rd.Spec})}
	if rd.Spec.TrafficPolicy == nil || rd.Spec.TrafficPolicy.ConnectionPool == nil {
		return cfg, nil
	}
	pool := rd.Spec.TrafficPolicy.ConnectionPool
	if tcp := pool.TCP; tcp != nil {
		// 0 is unset, as in Istio's DestinationRule (and Aeraki's, which embeds it).
		if tcp.MaxConnections != nil && *tcp.MaxConnections != 0 {
			if *tcp.MaxConnections < 0 {
				return nil, invalid("spec.trafficPolicy.connectionPool.tcp.maxConnections %d is negative", *tcp.MaxConnections)
			}
			n := uint32(*tcp.MaxConnections)
			cfg.maxConnections = &n
		}
		if tcp.ConnectTimeout != nil {
			d, err := duration(tcp.ConnectTimeout, "spec.trafficPolicy.connectionPool.tcp.connectTimeout", false)
			if err != nil {
				return nil, err
			}
			cfg.connectTimeout = d
		}
		if ka := tcp.TCPKeepalive; ka != nil {
			k, err := keepalive(ka)
			if err != nil {
				return nil, err
			}
			cfg.keepalive = k
		}
	}
	r := pool.Redis
	if r == nil {
		return cfg, nil
	}
	auth, err := resolveAuth(ctx, r.Auth, rd.Namespace, "spec.trafficPolicy.connectionPool.redis.auth")
	if err != nil {
		return nil, err
	}
	cfg.auth = auth
	switch r.Mode {
	case "", redisspec.ModeProxy:
		if len(r.DiscoveryEndpoints) > 0 {
			return nil, invalid("spec.trafficPolicy.connectionPool.redis.discoveryEndpoints need mode CLUSTER")
		}
	case redisspec.ModeCluster:
		cfg.clusterMode = true
		for i, e := range r.DiscoveryEndpoints {
			a, err := seed(e)
			if err != nil {
				return nil, invalid("spec.trafficPolicy.connectionPool.redis.discoveryEndpoints[%d] %q: %v", i, e, err)
			}
			cfg.seeds = append(cfg.seeds, a)
		}
	default:
		return nil, invalid("spec.trafficPolicy.connectionPool.redis.mode %q is neither PROXY nor CLUSTER", r.Mode)
	}
	return cfg, nil
}

// keepalive turns on TCP keepalive; unset fields keep the OS defaults, as Istio's
// DestinationRule does. Envoy counts in whole seconds: durations round up, to at
// least 1.
func keepalive(ka *redisspec.TCPKeepalive) (*core.TcpKeepalive, error) {
	out := &core.TcpKeepalive{}
	const where = "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive"
	if ka.Probes != nil && *ka.Probes != 0 { // 0 is unset, as in Istio's API
		if *ka.Probes < 0 {
			return nil, invalid("%s.probes %d is negative", where, *ka.Probes)
		}
		out.KeepaliveProbes = wrapperspb.UInt32(uint32(*ka.Probes))
	}
	for _, f := range []struct {
		d    *redisspec.Duration
		name string
		dst  **wrapperspb.UInt32Value
	}{{ka.Time, "time", &out.KeepaliveTime}, {ka.Interval, "interval", &out.KeepaliveInterval}} {
		if f.d == nil {
			continue
		}
		if f.d.Duration < 0 {
			return nil, invalid("%s.%s %v is negative", where, f.name, f.d.Duration)
		}
		secs := f.d.Duration / time.Second
		if f.d.Duration%time.Second != 0 || secs == 0 { // round up, to at least 1
			secs++
		}
		if secs > math.MaxUint32 {
			return nil, invalid("%s.%s %v is too long", where, f.name, f.d.Duration)
		}
		*f.dst = wrapperspb.UInt32(uint32(secs))
	}
	return out, nil
}

// seed parses a discovery endpoint: host:port, the host an IP or a DNS name.
func seed(e string) (*core.SocketAddress, error) {
	h, p, err := net.SplitHostPort(e)
	if err != nil {
		return nil, errors.New("not host:port")
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	if net.ParseIP(h) == nil && !dnsName(h) {
		return nil, fmt.Errorf("host %q is neither an IP nor a DNS name", h)
	}
	return &core.SocketAddress{Address: h, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)}}, nil
}

// dnsName reports whether h is a DNS name: dot-separated labels of letters, digits,
// '-' and '_', 1 to 63 bytes each, 253 in all.
func dnsName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
			if !letter && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// boundHosts are the hosts of svc that a Redis object binds, as the service's index
// binds them: equal, or matched by a wildcard host of the object.
func boundHosts(ctx *generator.Context, svc *model.Service, obj model.Object) []string {
	var out []string
	objHosts := model.HostsOf(obj, ctx.DomainSuffix)
	for _, h := range svc.Hosts {
		for _, oh := range objHosts {
			if oh == h || host.Name(oh).IsWildCarded() && host.Name(oh).Matches(host.Name(h)) {
				out = append(out, h)
				break
			}
		}
	}
	return out
}
