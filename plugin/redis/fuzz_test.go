package redis

import (
	"slices"
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

// fuzzPassword is the Secret's password: no error or verdict may show it.
const fuzzPassword = "Zq9-fuzz-password-Zq9"

// FuzzGenerate feeds arbitrary routes (prefixes, hosts, ports, mirror percentages),
// faults and settings through a RedisService, and connection settings, auth and mode
// through a RedisDestination. The generator must not panic, must return either an
// error or EnvoyFilters whose every patch Envoy accepts, and never show the password,
// neither in its error nor in the object errors the translation turns into the
// objects' Ready conditions, each of which names one of the two objects with a
// Reason of the API.
func FuzzGenerate(f *testing.F) {
	f.Add("user:", "USER:", "users", int32(0), 12.5, 50.0, int64(time.Second), int64(1024), int64(100), "REPLICA", false, false,
		int64(1500*time.Millisecond), int32(10), "PROXY", "", "password", "")
	f.Add("a", "b", "cache.redis.example", int32(6379), 0.0001, 100.0, int64(0), int64(-1), int64(1<<33), "ANY", false, true,
		int64(-1), int32(0), "CLUSTER", "shard:6379", "", "username")
	f.Add("", "x", "*.redis.svc.cluster.local", int32(70000), -1.0, 101.0, int64(-5), int64(0), int64(0), "master", false, false,
		int64(0), int32(-1), "CLUSTER", "[::1]:0", "nokey", "nouser")
	f.Add("a", "b", "multi", int32(7001), 100.0, 0.0, int64(time.Millisecond), int64(4294967295), int64(4294967295), "", true, false,
		int64(time.Hour), int32(1), "CLUSTER", "10.0.0.1:7000", "password", "username")
	f.Add("k", "K", "multi", int32(7001), 100.0, 0.0, int64(time.Millisecond), int64(0), int64(0), "", true, true,
		int64(time.Hour), int32(1), "", "", "password", "username")
	f.Fuzz(func(t *testing.T, prefix1, prefix2, host string, port int32, mirrorPct, faultPct float64, opTimeout, maxBuffer, unknownConns int64,
		readPolicy string, caseInsensitive, catchAllTwice bool, keepaliveTime int64, maxConnections int32, mode, seed, passwordKey, usernameKey string,
	) {
		generatortest.SkipInvalidUTF8(t, prefix1, prefix2, host, readPolicy, mode, seed, passwordKey, usernameKey)
		other := &model.Service{
			Name: "multi", Namespace: "redis", Hosts: []string{"multi.redis.svc.cluster.local"}, Addresses: []string{"240.240.0.2"},
			Ports: []*model.Port{{Number: 7000, Name: "tcp-redis", Protocol: model.Redis}, {Number: 7001, Name: "tcp-redis-b", Protocol: model.Redis}},
		}
		users := &model.Service{
			Name: "users", Namespace: "redis", Hosts: []string{"users.redis.svc.cluster.local"}, Addresses: []string{"240.240.0.3"},
			Ports: []*model.Port{{Number: 6390, Name: "tcp-redis", Protocol: model.Redis}},
		}
		rs := &model.Config[*redisspec.RedisServiceSpec]{
			Name: "cache", Namespace: "redis",
			Spec: &redisspec.RedisServiceSpec{
				Host: []string{"cache.redis.example"},
				Settings: &redisspec.RedisSettings{
					OpTimeout:                     &redisspec.Duration{Duration: time.Duration(opTimeout)},
					CaseInsensitive:               caseInsensitive,
					MaxBufferSizeBeforeFlush:      &maxBuffer,
					BufferFlushTimeout:            &redisspec.Duration{Duration: time.Duration(opTimeout / 2)},
					MaxUpstreamUnknownConnections: &unknownConns,
					ReadPolicy:                    redisspec.ReadPolicy(readPolicy),
					Auth:                          &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "auth", PasswordKey: passwordKey}},
				},
				Redis: []redisspec.RedisRoute{
					{
						Match: &redisspec.RouteMatch{Key: redisspec.KeyMatch{Prefix: prefix1, RemovePrefix: true}},
						Route: redisspec.RouteDestination{Host: host, Port: port},
						Mirror: []redisspec.Mirror{
							{Route: redisspec.RouteDestination{Host: "users"}, Percentage: &redisspec.Percent{Value: mirrorPct}, ExcludeReadCommands: true},
							{Route: redisspec.RouteDestination{Host: host, Port: port}},
						},
					},
					{Match: &redisspec.RouteMatch{Key: redisspec.KeyMatch{Prefix: prefix2}}, Route: redisspec.RouteDestination{Host: "cache.redis.example"}},
					{Route: redisspec.RouteDestination{Host: "users"}},
				},
				Faults: []redisspec.Fault{
					{Type: redisspec.FaultDelay, Percentage: &redisspec.Percent{Value: faultPct}, Delay: &redisspec.Duration{Duration: time.Duration(keepaliveTime)}, Commands: []string{prefix1}},
					{Type: redisspec.FaultError},
				},
			},
		}
		if catchAllTwice {
			rs.Spec.Redis = append(rs.Spec.Redis, redisspec.RedisRoute{Route: redisspec.RouteDestination{Host: host}})
		}
		var seeds []string
		if seed != "" {
			seeds = []string{seed}
		}
		rd := &model.Config[*redisspec.RedisDestinationSpec]{
			Name: "cache", Namespace: "redis",
			Spec: &redisspec.RedisDestinationSpec{Host: "cache.redis.example", TrafficPolicy: &redisspec.TrafficPolicy{
				ConnectionPool: &redisspec.ConnectionPoolSettings{
					TCP: &redisspec.TCPSettings{
						MaxConnections: &maxConnections,
						ConnectTimeout: &redisspec.Duration{Duration: time.Duration(opTimeout)},
						TCPKeepalive: &redisspec.TCPKeepalive{
							Probes: &maxConnections, Time: &redisspec.Duration{Duration: time.Duration(keepaliveTime)},
						},
					},
					Redis: &redisspec.RedisConnectionSettings{
						Mode: redisspec.RedisMode(mode), DiscoveryEndpoints: seeds,
						Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "auth", UsernameKey: usernameKey}},
					},
				},
			}},
		}
		svc := &model.Service{
			Name: "cache", Namespace: "redis", Hosts: []string{"cache.redis.example"}, Addresses: []string{"240.240.0.1"},
			WorkloadSelector:  map[string]string{"app": "cache"},
			Ports:             []*model.Port{{Number: 6379, Name: "tcp-redis", Protocol: model.Redis, TargetPort: 6380}},
			RedisServices:     []*model.Config[*redisspec.RedisServiceSpec]{rs},
			RedisDestinations: []*model.Config[*redisspec.RedisDestinationSpec]{rd},
		}
		ctx := generatortest.Context.WithLookup(&fuzzLookup{
			services: model.NewHostIndex([]*model.Service{svc, other, users}),
			secret:   &model.Secret{Data: map[string][]byte{"password": []byte(fuzzPassword), "username": []byte("app")}},
		})

		efs, err := New().Generate(ctx, svc, svc.Ports[0])
		generatortest.CheckResult(t, efs, err)
		if err != nil && strings.Contains(err.Error(), fuzzPassword) {
			t.Errorf("error shows the password: %v", err)
		}
		objects := map[model.ObjectRef]bool{
			{Kind: model.KindRedisService, Namespace: "redis", Name: "cache"}:     true,
			{Kind: model.KindRedisDestination, Namespace: "redis", Name: "cache"}: true,
		}
		for _, oe := range generator.ObjectErrors(err) {
			// The translation's verdict says oe.Err, under the object's Reason.
			if strings.Contains(oe.Error(), fuzzPassword) || strings.Contains(oe.Err.Error(), fuzzPassword) {
				t.Errorf("error of %s shows the password: %v", oe.Ref, oe)
			}
			if !objects[oe.Ref] {
				t.Errorf("error of %s, which is neither of the service's objects: %v", oe.Ref, oe)
			}
			if !slices.Contains(reasons, oe.Reason) {
				t.Errorf("error of %s has reason %q, not one of %v: %v", oe.Ref, oe.Reason, reasons, oe)
			}
		}
	})
}

// reasons are the Ready reasons a generation error can give an object.
var reasons = []string{
	redisspec.ReasonConflict, redisspec.ReasonSecretNotFound, redisspec.ReasonSecretKeyNotFound, redisspec.ReasonInvalid,
}

// fuzzLookup finds the fuzz test's services by host, and its one Secret, redis/auth.
type fuzzLookup struct {
	services model.HostIndex
	secret   *model.Secret
}

func (l *fuzzLookup) Service(host string) *model.Service { return l.services[host] }

func (l *fuzzLookup) Secret(namespace, name string) *model.Secret {
	if namespace == "redis" && name == "auth" {
		return l.secret
	}
	return nil
}
