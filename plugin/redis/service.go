package redis

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// proxyConfig is what a RedisService gives the redis_proxy filters of one service
// port. Without a RedisService it is the default: timeout, every key to the service.
type proxyConfig struct {
	// outbound holds every client-side setting.
	outbound *redis.RedisProxy_ConnPoolSettings
	// inbound holds what the server side keeps: op timeout and command stats.
	inbound  *redis.RedisProxy_ConnPoolSettings
	routes   []*redis.RedisProxy_PrefixRoutes_Route
	catchAll *redis.RedisProxy_PrefixRoutes_Route // nil: every other key to the service
	// caseInsensitive makes prefix routes ignore case.
	caseInsensitive bool
	faults          []*redis.RedisProxy_RedisFault
	// auth is what clients must send with AUTH to their sidecar.
	auth *credentials
}

// resolveService turns the RedisService bound to a service (nil for none) into the
// redis_proxy settings of one of its ports. The generator and Check both call it.
func resolveService(ctx *generator.Context, svc *model.Service, port *model.Port, rs *model.Config[*redisspec.RedisServiceSpec]) (*proxyConfig, error) {
	cfg := &proxyConfig{
		outbound: &redis.RedisProxy_ConnPoolSettings{OpTimeout: durationpb.New(DefaultOpTimeout)},
		inbound:  &redis.RedisProxy_ConnPoolSettings{OpTimeout: durationpb.New(DefaultOpTimeout)},
	}
	if rs == nil {
		return cfg, nil
	}
	spec := rs.Spec
	if spec.Unreadable != "" {
		return nil, unreadable(spec.Unreadable)
	}
	if err := cfg.applySettings(spec.Settings); err != nil {
		return nil, err
	}
	if spec.Settings != nil {
		auth, err := resolveAuth(ctx, spec.Settings.Auth, rs.Namespace, "spec.settings.auth")
		if err != nil {
			return nil, err
		}
		cfg.auth = auth
	}
	d := &destinations{ctx: ctx, svc: svc, port: port, namespace: rs.Namespace}
	if err := cfg.applyRoutes(d, spec.Redis); err != nil {
		return nil, err
	}
	for i := range spec.Faults {
		f, err := fault(&spec.Faults[i], fmt.Sprintf("spec.faults[%d]", i))
		if err != nil {
			return nil, err
		}
		cfg.faults = append(cfg.faults, f)
	}
	return cfg, nil
}

// readPolicies maps the API's read policies to Envoy's of the same name.
var readPolicies = map[redisspec.ReadPolicy]redis.RedisProxy_ConnPoolSettings_ReadPolicy{
	"":                                redis.RedisProxy_ConnPoolSettings_MASTER,
	redisspec.ReadPolicyMaster:        redis.RedisProxy_ConnPoolSettings_MASTER,
	redisspec.ReadPolicyPreferMaster:  redis.RedisProxy_ConnPoolSettings_PREFER_MASTER,
	redisspec.ReadPolicyReplica:       redis.RedisProxy_ConnPoolSettings_REPLICA,
	redisspec.ReadPolicyPreferReplica: redis.RedisProxy_ConnPoolSettings_PREFER_REPLICA,
	redisspec.ReadPolicyAny:           redis.RedisProxy_ConnPoolSettings_ANY,
}

func (cfg *proxyConfig) applySettings(s *redisspec.RedisSettings) error {
	if s == nil {
		return nil
	}
	out := cfg.outbound
	if s.OpTimeout != nil {
		d, err := duration(s.OpTimeout, "spec.settings.opTimeout", false)
		if err != nil {
			return err
		}
		out.OpTimeout = d
		cfg.inbound.OpTimeout = d
	}
	out.EnableCommandStats = s.EnableCommandStats
	cfg.inbound.EnableCommandStats = s.EnableCommandStats
	if s.MaxBufferSizeBeforeFlush != nil {
		n, err := uint32Of(*s.MaxBufferSizeBeforeFlush, "spec.settings.maxBufferSizeBeforeFlush", 0)
		if err != nil {
			return err
		}
		out.MaxBufferSizeBeforeFlush = n
	}
	if s.BufferFlushTimeout != nil {
		d, err := duration(s.BufferFlushTimeout, "spec.settings.bufferFlushTimeout", true)
		if err != nil {
			return err
		}
		out.BufferFlushTimeout = d
	}
	if s.MaxUpstreamUnknownConnections != nil {
		n, err := uint32Of(*s.MaxUpstreamUnknownConnections, "spec.settings.maxUpstreamUnknownConnections", 0)
		if err != nil {
			return err
		}
		out.MaxUpstreamUnknownConnections = wrapperspb.UInt32(n)
	}
	out.EnableHashtagging = s.EnableHashtagging
	out.EnableRedirection = s.EnableRedirection
	policy, ok := readPolicies[s.ReadPolicy]
	if !ok {
		return invalid("spec.settings.readPolicy %q is none of MASTER, PREFER_MASTER, REPLICA, PREFER_REPLICA, ANY", s.ReadPolicy)
	}
	out.ReadPolicy = policy
	cfg.caseInsensitive = s.CaseInsensitive
	return nil
}

// maxPrefixBytes is Envoy's limit on a route prefix.
const maxPrefixBytes = 1000

// applyRoutes turns spec.redis into prefix routes, in input order (Envoy matches the
// longest prefix whatever the order), and the catch-all. Two routes for the same
// prefix (the same ignoring ASCII case, when caseInsensitive: Envoy lowercases them)
// or two without a match conflict: Envoy would reject the filter.
func (cfg *proxyConfig) applyRoutes(d *destinations, routes []redisspec.RedisRoute) error {
	seen := map[string]int{}
	catchAll := -1
	for i := range routes {
		r := &routes[i]
		where := fmt.Sprintf("spec.redis[%d]", i)
		route, err := d.route(r, where)
		if err != nil {
			return err
		}
		if r.Match == nil {
			if catchAll >= 0 {
				return conflict("%s has no match, as spec.redis[%d]: there is one catch-all route", where, catchAll)
			}
			catchAll = i
			cfg.catchAll = route
			continue
		}
		prefix := r.Match.Key.Prefix
		switch {
		case prefix == "":
			return invalid("%s.match.key.prefix is empty: leave match out for a catch-all route", where)
		case len(prefix) > maxPrefixBytes:
			return invalid("%s.match.key.prefix is longer than %d bytes", where, maxPrefixBytes)
		}
		key := prefix
		if cfg.caseInsensitive {
			key = asciiLower(prefix)
		}
		if j, dup := seen[key]; dup {
			if cfg.caseInsensitive {
				return conflict("%s has the prefix %q of spec.redis[%d], ignoring case (caseInsensitive)", where, prefix, j)
			}
			return conflict("%s has the prefix %q of spec.redis[%d]", where, prefix, j)
		}
		seen[key] = i
		route.Prefix = prefix
		route.RemovePrefix = r.Match.Key.RemovePrefix
		cfg.routes = append(cfg.routes, route)
	}
	return nil
}

// asciiLower lowercases ASCII letters only, as Envoy does with case-insensitive prefixes.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

var faultTypes = map[redisspec.FaultType]redis.RedisProxy_RedisFault_RedisFaultType{
	redisspec.FaultDelay: redis.RedisProxy_RedisFault_DELAY,
	redisspec.FaultError: redis.RedisProxy_RedisFault_ERROR,
}

func fault(f *redisspec.Fault, where string) (*redis.RedisProxy_RedisFault, error) {
	// Unset is DELAY, as in Aeraki's API (the API server fills it in; aeraki
	// generate reads files as written).
	t, ok := faultTypes[cmp.Or(f.Type, redisspec.FaultDelay)]
	if !ok {
		return nil, invalid("%s.type %q is neither DELAY nor ERROR", where, f.Type)
	}
	enabled, err := fraction(f.Percentage, where+".percentage")
	if err != nil {
		return nil, err
	}
	out := &redis.RedisProxy_RedisFault{FaultType: t, FaultEnabled: enabled, Commands: slices.Clone(f.Commands)}
	// A DELAY fault without delay delays by nothing, as Envoy and Aeraki read it.
	if f.Delay != nil {
		d, err := duration(f.Delay, where+".delay", true)
		if err != nil {
			return nil, err
		}
		out.Delay = d
	}
	for i, c := range f.Commands {
		if strings.TrimSpace(c) == "" {
			return nil, invalid("%s.commands[%d] is empty", where, i)
		}
	}
	return out, nil
}
