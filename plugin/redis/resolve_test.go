package redis

import (
	"errors"
	"math"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	redis "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/redis_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
)

// push reads YAML documents and returns what a push would give the generator.
func push(t *testing.T, docs string) (*generator.Context, []*model.Service) {
	t.Helper()
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(docs), t.Name()); len(errs) > 0 {
		t.Fatalf("reading test input: %v", errors.Join(errs...))
	}
	ctx, services := generatortest.Push(t, objs.Snapshot(generatortest.Context.DomainSuffix))
	return ctx, services
}

// find returns the service named namespace/name.
func find(t *testing.T, services []*model.Service, key string) *model.Service {
	t.Helper()
	for _, s := range services {
		if s.Key() == key {
			return s
		}
	}
	t.Fatalf("no service %s", key)
	return nil
}

// serviceEntry is a ServiceEntry in namespace redis with a VIP and workloads, and the
// given ports (name:number).
func serviceEntry(name, host, vip string, ports ...string) string {
	return fixture.ServiceEntryYAML("redis", name, host, vip, ports...)
}

var cacheSE = serviceEntry("cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379")

// outboundProxy decodes the redis_proxy of the first outbound listener patch.
func outboundProxy(t *testing.T, efs []*model.EnvoyFilter) *redis.RedisProxy {
	t.Helper()
	for _, ef := range efs {
		for _, p := range ef.Spec.GetConfigPatches() {
			if p.GetApplyTo() == networking.EnvoyFilter_NETWORK_FILTER && p.GetMatch().GetContext() == networking.EnvoyFilter_SIDECAR_OUTBOUND {
				return decodeProxy(t, p.GetPatch().GetValue())
			}
		}
	}
	t.Fatal("no outbound redis_proxy")
	return nil
}

func decodeProxy(t *testing.T, v *structpb.Struct) *redis.RedisProxy {
	t.Helper()
	raw, err := protojson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	f := &listener.Filter{}
	if err := protojson.Unmarshal(raw, f); err != nil {
		t.Fatal(err)
	}
	out := &redis.RedisProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// clusterPatchesOf returns the CLUSTER patches of efs with their values decoded.
func clusterPatchesOf(t *testing.T, efs []*model.EnvoyFilter) (ps []*networking.EnvoyFilter_EnvoyConfigObjectPatch, values []*cluster.Cluster) {
	t.Helper()
	for _, ef := range efs {
		for _, p := range ef.Spec.GetConfigPatches() {
			if p.GetApplyTo() != networking.EnvoyFilter_CLUSTER {
				continue
			}
			c := &cluster.Cluster{}
			if v := p.GetPatch().GetValue(); v != nil {
				raw, err := protojson.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if err := protojson.Unmarshal(raw, c); err != nil {
					t.Fatal(err)
				}
			}
			ps, values = append(ps, p), append(values, c)
		}
	}
	return ps, values
}

// TestReadPolicies: every read policy of the API is Envoy's of the same name.
func TestReadPolicies(t *testing.T) {
	for _, p := range []redisspec.ReadPolicy{
		redisspec.ReadPolicyMaster, redisspec.ReadPolicyPreferMaster, redisspec.ReadPolicyReplica,
		redisspec.ReadPolicyPreferReplica, redisspec.ReadPolicyAny,
	} {
		cfg := &proxyConfig{outbound: &redis.RedisProxy_ConnPoolSettings{}, inbound: &redis.RedisProxy_ConnPoolSettings{}}
		if err := cfg.applySettings(&redisspec.RedisSettings{ReadPolicy: p}); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got := cfg.outbound.GetReadPolicy().String(); got != string(p) {
			t.Errorf("read policy %s became Envoy's %s", p, got)
		}
	}
	cfg := &proxyConfig{outbound: &redis.RedisProxy_ConnPoolSettings{}, inbound: &redis.RedisProxy_ConnPoolSettings{}}
	if err := cfg.applySettings(&redisspec.RedisSettings{}); err != nil || cfg.outbound.GetReadPolicy() != redis.RedisProxy_ConnPoolSettings_MASTER {
		t.Errorf("unset read policy: %v, %v; want MASTER", cfg.outbound.GetReadPolicy(), err)
	}
	if err := cfg.applySettings(&redisspec.RedisSettings{ReadPolicy: "REPLICA_ONLY"}); reasonOf(err) != redisspec.ReasonInvalid {
		t.Errorf("unknown read policy: %v, want Invalid", err)
	}
}

// TestSecretKeys pins which Secret keys are read: the password key must exist; the
// username key is optional when defaulted and required when named. Errors name the
// Secret and key, never a value.
func TestSecretKeys(t *testing.T) {
	const password, username = "pw-VALUE-1", "user-VALUE-2"
	secret := func(data string) string {
		return "---\napiVersion: v1\nkind: Secret\nmetadata: {name: auth, namespace: redis}\nstringData: {" + data + "}\n"
	}
	for _, c := range []struct {
		name, data         string
		ref                redisspec.SecretReference
		wantUser, wantPass string
		reason             string // empty: success
	}{
		{name: "default keys", data: "password: " + password + ", username: " + username, wantPass: password, wantUser: username},
		{name: "default username key absent: no username", data: "password: " + password, wantPass: password},
		{name: "default username key empty: no username", data: "password: " + password + `, username: ""`, wantPass: password},
		{name: "named keys", data: "pw: " + password + ", user: " + username, ref: redisspec.SecretReference{PasswordKey: "pw", UsernameKey: "user"}, wantPass: password, wantUser: username},
		{name: "named username key absent", data: "password: " + password, ref: redisspec.SecretReference{UsernameKey: "username"}, reason: redisspec.ReasonSecretKeyNotFound},
		{name: "named username key empty", data: "password: " + password + `, user: ""`, ref: redisspec.SecretReference{UsernameKey: "user"}, reason: redisspec.ReasonInvalid},
		{name: "default password key absent", data: "pw: " + password, reason: redisspec.ReasonSecretKeyNotFound},
		{name: "named password key absent", data: "password: " + password, ref: redisspec.SecretReference{PasswordKey: "pw"}, reason: redisspec.ReasonSecretKeyNotFound},
		{name: "empty password", data: `password: ""`, reason: redisspec.ReasonInvalid},
		{name: "no Secret", reason: redisspec.ReasonSecretNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			docs := cacheSE
			if c.data != "" {
				docs += secret(c.data)
			}
			ctx, _ := push(t, docs)
			ref := c.ref
			ref.Name = "auth"
			got, err := resolveAuth(ctx, &redisspec.Auth{Secret: &ref}, "redis", "auth")
			if c.reason != "" {
				if reasonOf(err) != c.reason || err == nil {
					t.Fatalf("error %v (reason %s), want reason %s", err, reasonOf(err), c.reason)
				}
				if strings.Contains(err.Error(), "VALUE") {
					t.Errorf("error shows a credential: %v", err)
				}
				if !strings.Contains(err.Error(), "redis/auth") {
					t.Errorf("error does not name the Secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.password.GetInlineString() != c.wantPass || got.username.GetInlineString() != c.wantUser {
				t.Errorf("password %q username %q, want %q %q", got.password.GetInlineString(), got.username.GetInlineString(), c.wantPass, c.wantUser)
			}
			if c.wantUser == "" && got.username != nil {
				t.Errorf("username %v, want none", got.username)
			}
		})
	}
}

// TestRouteDestinations pins how route and mirror hosts become clusters, and above
// all that a mirror to another host uses that host's port, not the current one.
func TestRouteDestinations(t *testing.T) {
	docs := serviceEntry("cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379", "tcp-redis-replica:6380") +
		serviceEntry("shadow", "shadow.redis.svc.cluster.local", "240.240.30.2", "tcp-redis:6390") +
		serviceEntry("multi", "multi.redis.svc.cluster.local", "240.240.30.3", "tcp-redis:7000", "tcp-redis-b:7001") +
		serviceEntry("dubbo", "dubbo.redis.svc.cluster.local", "240.240.30.4", "tcp-dubbo:20880")
	ctx, services := push(t, docs)
	svc := find(t, services, "redis/cache")
	for _, c := range []struct {
		name string
		dest redisspec.RouteDestination
		port uint32 // the port generated
		want string // cluster, or a part of the error
	}{
		{"mirror to another host: its own port", redisspec.RouteDestination{Host: "shadow"}, 6379, "outbound|6390||shadow.redis.svc.cluster.local"},
		{"the service itself: the current port", redisspec.RouteDestination{Host: "cache.redis.example"}, 6380, "outbound|6380||cache.redis.example"},
		{"the service itself, port given", redisspec.RouteDestination{Host: "cache.redis.example", Port: 6379}, 6380, "outbound|6379||cache.redis.example"},
		{"several tcp-redis ports, port given", redisspec.RouteDestination{Host: "multi", Port: 7001}, 6379, "outbound|7001||multi.redis.svc.cluster.local"},
		{"several tcp-redis ports, no port", redisspec.RouteDestination{Host: "multi"}, 6379, "several tcp-redis ports"},
		{"port not tcp-redis", redisspec.RouteDestination{Host: "shadow", Port: 6379}, 6379, "is not a tcp-redis port"},
		{"no tcp-redis port", redisspec.RouteDestination{Host: "dubbo"}, 6379, "not a Redis service"},
		{"unknown host", redisspec.RouteDestination{Host: "nowhere"}, 6379, "not a known service"},
		{"wildcard", redisspec.RouteDestination{Host: "*.redis.svc.cluster.local"}, 6379, "wildcard"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &destinations{ctx: ctx, svc: svc, port: &model.Port{Number: c.port, Protocol: model.Redis}, namespace: "redis"}
			got, err := d.cluster(c.dest, "route")
			if strings.HasPrefix(c.want, "outbound|") {
				if err != nil || got != c.want {
					t.Errorf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || reasonOf(err) != redisspec.ReasonInvalid {
				t.Errorf("got %q, %v; want an Invalid error with %q", got, err, c.want)
			}
		})
	}

	// The same through the generator: the mirror of a route of port 6379 to shadow.
	docs += `---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: redis}
spec:
  host: [cache.redis.example]
  redis:
  - route: {host: cache.redis.example}
    mirror: [{route: {host: shadow}}]
`
	ctx, services = push(t, docs)
	svc = find(t, services, "redis/cache")
	efs, err := New().Generate(ctx, svc, svc.Ports[0])
	if !generatortest.CheckResult(t, efs, err) {
		t.Fatal(err)
	}
	catchAll := outboundProxy(t, efs).GetPrefixRoutes().GetCatchAllRoute()
	if got := catchAll.GetRequestMirrorPolicy()[0].GetCluster(); got != "outbound|6390||shadow.redis.svc.cluster.local" || catchAll.GetCluster() != "outbound|6379||cache.redis.example" {
		t.Errorf("route to %s mirrored to %s; want the mirror on shadow's port 6390", catchAll.GetCluster(), got)
	}
}

// TestKeepalive: an empty tcpKeepalive still turns keepalive on; durations become
// whole seconds, rounded up, at least 1.
func TestKeepalive(t *testing.T) {
	for _, c := range []struct {
		name           string
		yaml           string
		time, interval uint32 // 0: unset
	}{
		{"empty: keepalive on, OS defaults", "{}", 0, 0},
		{"round up", "{time: 1500ms, interval: 1ms}", 2, 1},
		{"zero is at least 1", "{time: 0s}", 1, 0},
		{"whole seconds", "{time: 2h, interval: 75s}", 7200, 75},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, services := push(t, cacheSE+`---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: redis}
spec:
  host: cache.redis.example
  trafficPolicy: {connectionPool: {tcp: {tcpKeepalive: `+c.yaml+`}}}
`)
			svc := services[0]
			efs, err := New().Generate(ctx, svc, svc.Ports[0])
			if !generatortest.CheckResult(t, efs, err) {
				t.Fatal(err)
			}
			ps, values := clusterPatchesOf(t, efs)
			if len(ps) != 1 || ps[0].GetPatch().GetOperation() != networking.EnvoyFilter_Patch_MERGE {
				t.Fatalf("got %d cluster patches, want one MERGE", len(ps))
			}
			ka := values[0].GetUpstreamConnectionOptions().GetTcpKeepalive()
			if ka == nil {
				t.Fatal("no tcp_keepalive: keepalive stays off")
			}
			if ka.GetKeepaliveTime().GetValue() != c.time || ka.GetKeepaliveInterval().GetValue() != c.interval || ka.GetKeepaliveProbes() != nil {
				t.Errorf("keepalive %v, want time %d interval %d", ka, c.time, c.interval)
			}
			// Keepalive alone: nothing else is patched.
			if values[0].GetConnectTimeout() != nil || values[0].GetCircuitBreakers() != nil || len(values[0].GetTypedExtensionProtocolOptions()) > 0 {
				t.Errorf("more than keepalive patched: %v", values[0])
			}
		})
	}
}

// TestTwoPorts: each tcp-redis port of a service gets its own filters and its own
// cluster patches, to its own clusters.
func TestTwoPorts(t *testing.T) {
	ctx, services := push(t, serviceEntry("cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379", "tcp-redis-b:6380")+`---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: redis}
spec:
  host: cache.redis.example
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 5}}}
`)
	svc := services[0]
	names := map[string]bool{}
	for _, port := range svc.Ports {
		efs, err := New().Generate(ctx, svc, port)
		if !generatortest.CheckResult(t, efs, err) {
			t.Fatal(err)
		}
		want := model.OutboundClusterName(port.Number, "", "cache.redis.example")
		if got := outboundProxy(t, efs).GetPrefixRoutes().GetCatchAllRoute().GetCluster(); got != want {
			t.Errorf("port %d routes to %s, want %s", port.Number, got, want)
		}
		ps, _ := clusterPatchesOf(t, efs)
		if len(ps) != 1 || ps[0].GetMatch().GetCluster().GetPortNumber() != port.Number {
			t.Errorf("port %d: cluster patches %v, want one for its own port", port.Number, ps)
		}
		for _, ef := range efs {
			if names[ef.Key()] {
				t.Errorf("EnvoyFilter %s made for two ports", ef.Key())
			}
			names[ef.Key()] = true
		}
	}
	if len(names) != 4 {
		t.Errorf("EnvoyFilters %v, want outbound and inbound for each port", names)
	}
}

// TestFraction: percentages in millionths, exact for fractions such as 12.5.
func TestFraction(t *testing.T) {
	for p, want := range map[float64]uint32{0: 0, 12.5: 125000, 0.0001: 1, 33.3333: 333333, 100: 1000000} {
		f, err := fraction(&redisspec.Percent{Value: p}, "percentage")
		if err != nil || f.GetDefaultValue().GetNumerator() != want || f.GetDefaultValue().GetDenominator().String() != "MILLION" {
			t.Errorf("%v%% = %v, %v; want %d millionths", p, f, err, want)
		}
	}
	if f, err := fraction(nil, "percentage"); err != nil || f.GetDefaultValue().GetNumerator() != 1000000 {
		t.Errorf("unset = %v, %v; want all", f, err)
	}
	for _, p := range []float64{-1, 100.5, math.NaN(), math.Inf(1)} {
		if _, err := fraction(&redisspec.Percent{Value: p}, "percentage"); reasonOf(err) != redisspec.ReasonInvalid || err == nil {
			t.Errorf("%v: %v, want Invalid", p, err)
		}
	}
}

// A Secret of a namespace that granted the controller nothing: its own reason, and a
// message with the grant to make.
func TestSecretNotGranted(t *testing.T) {
	ctx, _ := push(t, cacheSE)
	ctx = ctx.WithLookup(forbiddenSecrets{})
	_, err := resolveAuth(ctx, &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "auth"}}, "redis", "spec.settings.auth")
	if reasonOf(err) != redisspec.ReasonSecretNotGranted || !strings.Contains(err.Error(), "kubectl -n redis create rolebinding aeraki-secret-reader") {
		t.Errorf("error %v (reason %s), want %s with the grant to make", err, reasonOf(err), redisspec.ReasonSecretNotGranted)
	}
}

// forbiddenSecrets finds every Secret forbidden.
type forbiddenSecrets struct{}

func (forbiddenSecrets) Service(string) *model.Service { return nil }

func (forbiddenSecrets) Secret(namespace, name string) *model.Secret {
	return &model.Secret{Namespace: namespace, Name: name, Forbidden: true}
}

// TestMaxConnectionsNeedsIstiod131: maxConnections (PROXY mode) patches the clusters
// with MERGE_AND_REPLACE_LIST, which istiod reads only from 1.31. For an older istiod
// the service fails with IstiodTooOld, naming the release it needs, and nothing is
// generated; the other settings, and CLUSTER mode (an ADDed cluster), need no 1.31.
func TestMaxConnectionsNeedsIstiod131(t *testing.T) {
	dest := func(policy string) string {
		return cacheSE + fixture.RedisDestinationYAML("redis", "cache", "cache.redis.example", policy)
	}
	old := model.NewIstiod("1.31-dev") // master before 1.31: promises 1.30
	for _, c := range []struct {
		name, policy string
		istiod       model.Istiod
		tooOld       bool
	}{
		{"old istiod, maxConnections", `{tcp: {maxConnections: 5}}`, old, true},
		{"1.31, maxConnections", `{tcp: {maxConnections: 5}}`, model.NewIstiod("1.31.0"), false},
		{"unknown istiod is the newest", `{tcp: {maxConnections: 5}}`, model.NewIstiod("unknown"), false},
		{"old istiod, connectTimeout", `{tcp: {connectTimeout: 2s}}`, old, false},
		{"old istiod, CLUSTER mode", `{tcp: {maxConnections: 5}, redis: {mode: CLUSTER}}`, old, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, services := push(t, dest(c.policy))
			ctx.Istiod = c.istiod
			efs, err := New().Generate(ctx, services[0], services[0].Ports[0])
			if !c.tooOld {
				if !generatortest.CheckResult(t, efs, err) {
					t.Fatal(err)
				}
				for _, ef := range efs {
					for _, p := range ef.Spec.GetConfigPatches() {
						if op := p.GetPatch().GetOperation(); op == networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST && !c.istiod.Version.AtLeast(model.Istio131) {
							t.Errorf("%s: MERGE_AND_REPLACE_LIST for istiod %s", ef.Key(), c.istiod)
						}
					}
				}
				return
			}
			if len(efs) != 0 {
				t.Errorf("got %d EnvoyFilters for an istiod that would ignore them", len(efs))
			}
			oes := generator.ObjectErrors(err)
			if len(oes) != 1 || oes[0].Reason != redisspec.ReasonIstiodTooOld || oes[0].Ref.Kind != model.KindRedisDestination {
				t.Fatalf("error %v, want one IstiodTooOld on the RedisDestination", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "istiod 1.31 or later") || !strings.Contains(msg, `1.30 (reports "1.31-dev")`) {
				t.Errorf("message %q does not name the istiod needed and the one connected", msg)
			}
		})
	}
}
