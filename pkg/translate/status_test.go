package translate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

// translateDocs reads YAML documents and translates them as a push would.
func translateDocs(t *testing.T, docs string) (*translate.Translation, *model.Snapshot) {
	t.Helper()
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(docs), t.Name()); len(errs) > 0 {
		t.Fatalf("reading test input: %v", errors.Join(errs...))
	}
	snap := objs.Snapshot(translatorContext.DomainSuffix)
	got, err := translate.Translate(translatorContext, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return got, snap
}

// serviceEntry is a ServiceEntry in namespace redis with a VIP and workloads, and the
// given ports (name:number).
func serviceEntry(name, host, vip string, ports ...string) string {
	return fixture.ServiceEntryYAML("redis", name, host, vip, ports...)
}

var cacheSE = serviceEntry("cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379")

// TestVerdicts: one case per Reason, for both kinds. The verdicts are those of the
// push's own translation; messages never show a password.
func TestVerdicts(t *testing.T) {
	const password = "pw-VALUE-SECRET"
	base := cacheSE +
		serviceEntry("users", "users.redis.svc.cluster.local", "240.240.30.2", "tcp-redis:6379") +
		serviceEntry("dubbo", "dubbo.redis.svc.cluster.local", "240.240.30.3", "tcp-dubbo:20880") + `---
apiVersion: v1
kind: Secret
metadata: {name: auth, namespace: redis}
stringData: {password: ` + password + `}
`
	rs := func(name, spec string) string {
		return "---\napiVersion: redis.aeraki.io/v1alpha1\nkind: RedisService\nmetadata: {name: " + name + ", namespace: redis, generation: 3}\nspec:\n" + spec
	}
	rd := func(name, spec string) string {
		return "---\napiVersion: redis.aeraki.io/v1alpha1\nkind: RedisDestination\nmetadata: {name: " + name + ", namespace: redis, generation: 3}\nspec:\n" + spec
	}
	for _, c := range []struct {
		name string
		docs string
		// checked is the object checked: kind/name.
		checked string
		reason  string
		message string // a part of the message
	}{
		{
			name:    "RedisService accepted",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis: [{match: {key: {prefix: 'u:'}}, route: {host: users}}]\n  settings: {auth: {secret: {name: auth}}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonAccepted, message: "applies to ServiceEntry redis/cache",
		},
		{
			// A wildcard would configure services the object does not name.
			name:    "RedisDestination with a wildcard host",
			docs:    rd("all", "  host: '*.redis.svc.cluster.local'\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 3}}}\n"),
			checked: "RedisDestination/all", reason: redisspec.ReasonInvalid, message: "include a wildcard, which is refused",
		},
		{
			name:    "RedisService for a service of another namespace",
			docs:    rs("cache", "  host: [orders.shop.example]\n") + fixture.ServiceEntryYAML("shop", "orders", "orders.shop.example", "240.240.31.1", "tcp-redis:6379"),
			checked: "RedisService/cache", reason: redisspec.ReasonOtherNamespace, message: "ServiceEntry shop/orders has these hosts but is in another namespace",
		},
		{
			name: "RedisDestination for a service of another namespace",
			docs: rd("cache", "  host: orders.shop.example\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 3}}}\n") +
				fixture.ServiceEntryYAML("shop", "orders", "orders.shop.example", "240.240.31.1", "tcp-redis:6379"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonOtherNamespace, message: "only services of its own namespace",
		},
		{
			// Stored in a form this API cannot read: its service fails for it.
			name:    "RedisService unreadable",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {opTimeout: 1d}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonUnreadable, message: `unknown unit "d"`,
		},
		{
			// Its hosts unreadable too: it names no service, and says why.
			name:    "RedisDestination unreadable, hosts too",
			docs:    rd("cache", "  host: [cache.redis.example]\n"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonUnreadable, message: "cannot be read",
		},
		{
			name:    "no service has the host",
			docs:    rs("cache", "  host: [nothing]\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonNoMatchingService, message: "nothing.redis.svc.cluster.local",
		},
		{
			name:    "the host's service has no tcp-redis port",
			docs:    rd("dubbo", "  host: dubbo\n"),
			checked: "RedisDestination/dubbo", reason: redisspec.ReasonNoMatchingService,
		},
		{
			name:    "an earlier RedisService binds the service",
			docs:    rs("a", "  host: [cache.redis.example]\n") + rs("b", "  host: [cache.redis.example, users]\n"),
			checked: "RedisService/b", reason: redisspec.ReasonConflict, message: "RedisService redis/a",
		},
		{
			name:    "the earlier one is accepted",
			docs:    rs("a", "  host: [cache.redis.example]\n") + rs("b", "  host: [cache.redis.example]\n"),
			checked: "RedisService/a", reason: redisspec.ReasonAccepted,
		},
		{
			name:    "an earlier RedisDestination binds the service",
			docs:    rd("a", "  host: cache.redis.example\n") + rd("b", "  host: cache.redis.example\n"),
			checked: "RedisDestination/b", reason: redisspec.ReasonConflict, message: "RedisDestination redis/a",
		},
		{
			name:    "two routes with one prefix",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis:\n  - {match: {key: {prefix: 'u:'}}, route: {host: users}}\n  - {match: {key: {prefix: 'u:'}}, route: {host: cache.redis.example}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonConflict, message: `prefix "u:"`,
		},
		{
			name:    "two catch-all routes",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis:\n  - {route: {host: users}}\n  - {route: {host: cache.redis.example}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonConflict, message: "catch-all",
		},
		{
			name:    "RedisService Secret missing",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: gone}}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonSecretNotFound, message: "Secret redis/gone",
		},
		{
			name:    "RedisDestination Secret missing",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: gone}}}}}\n"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonSecretNotFound, message: "Secret redis/gone",
		},
		{
			name:    "RedisService Secret key missing",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: auth, passwordKey: pass}}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonSecretKeyNotFound, message: `"pass"`,
		},
		{
			name:    "RedisDestination named username key missing",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: auth, usernameKey: username}}}}}\n"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonSecretKeyNotFound, message: `"username"`,
		},
		{
			name:    "route to a service without tcp-redis port",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis: [{route: {host: dubbo}}]\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonInvalid, message: "not a Redis service",
		},
		{
			name: "a service failing on another port",
			docs: rs("mixed", "  host: [mixed]\n") + serviceEntry("mixed", "mixed.redis.svc.cluster.local", "240.240.30.5", "tcp-redis:6379", "tcp-dubbo:20880") +
				"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: mixed, namespace: redis}\nspec:\n  hosts: [mixed]\n" +
				"  http: [{route: [{destination: {host: mixed}, weight: 90}]}]\n",
			checked: "RedisService/mixed", reason: redisspec.ReasonServiceFailed,
			message: `ServiceEntry redis/mixed cannot be generated, so this is not in effect there: port 20880 (dubbo): VirtualService redis/mixed, http rule #0: destination weights add up to 90, not 100`,
		},
		{
			name:    "a second ServiceEntry with the same host and port",
			docs:    rd("cache", "  host: cache.redis.example\n") + serviceEntry("cache2", "cache.redis.example", "240.240.30.1", "tcp-redis:6379"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonServiceFailed, message: "ServiceEntry redis/cache2 cannot be generated",
		},
		{
			name:    "both objects fail on one service: the RedisService's own error",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: gone}}}\n") + rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER, discoveryEndpoints: ['shard-0']}}}\n"),
			checked: "RedisService/cache", reason: redisspec.ReasonSecretNotFound, message: "Secret redis/gone",
		},
		{
			name:    "both objects fail on one service: the RedisDestination's own error",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: gone}}}\n") + rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER, discoveryEndpoints: ['shard-0']}}}\n"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonInvalid, message: "discoveryEndpoints[0]",
		},
		{
			name:    "bad discovery endpoint",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER, discoveryEndpoints: ['shard-0']}}}\n"),
			checked: "RedisDestination/cache", reason: redisspec.ReasonInvalid, message: "discoveryEndpoints[0]",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, snap := translateDocs(t, base+c.docs)
			kind, name, _ := strings.Cut(c.checked, "/")
			v, ok := got.Verdicts[model.ObjectRef{Kind: kind, Namespace: "redis", Name: name}]
			if !ok {
				t.Fatalf("no verdict for %s: %v", c.checked, got.Verdicts)
			}
			if v.Reason != c.reason || v.Ready != (c.reason == redisspec.ReasonAccepted) || !strings.Contains(v.Message, c.message) {
				t.Errorf("got %+v, want reason %s and a message with %q", v, c.reason, c.message)
			}
			if v.Generation != 3 {
				t.Errorf("generation %d, want the object's 3", v.Generation)
			}
			// One verdict for each object, none for anything else, and no password in any.
			if n := len(snap.RedisServices) + len(snap.RedisDestinations); len(got.Verdicts) != n {
				t.Errorf("%d verdicts for %d objects: %v", len(got.Verdicts), n, got.Verdicts)
			}
			for _, list := range []struct {
				kind string
				objs []model.Object
			}{{model.KindRedisService, snap.RedisServices}, {model.KindRedisDestination, snap.RedisDestinations}} {
				for _, o := range list.objs {
					if _, ok := got.Verdicts[model.ObjectRef{Kind: list.kind, Namespace: o.Namespace, Name: o.Name}]; !ok {
						t.Errorf("no verdict for %s %s/%s", list.kind, o.Namespace, o.Name)
					}
				}
			}
			for ref, v := range got.Verdicts {
				if strings.Contains(v.Message, password) {
					t.Errorf("the message of %s shows the password: %s", ref, v.Message)
				}
			}
		})
	}
}

// A RedisService or RedisDestination of another namespace changes nothing of a
// service's EnvoyFilters; one of the root namespace configures it.
func TestRedisObjectsStayInTheirNamespace(t *testing.T) {
	object := func(kind, namespace, spec string) string {
		return "---\napiVersion: redis.aeraki.io/v1alpha1\nkind: " + kind + "\nmetadata: {name: x, namespace: " + namespace + "}\nspec:\n" + spec
	}
	const (
		rsSpec = "  host: [cache.redis.example]\n  redis:\n  - route: {host: cache.redis.example}\n    mirror: [{route: {host: cache.redis.example}}]\n"
		rdSpec = "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}\n"
	)
	alone, _ := translateDocs(t, cacheSE)
	foreign, _ := translateDocs(t, cacheSE+object("RedisService", "tenant", rsSpec)+object("RedisDestination", "tenant", rdSpec))
	if diff := cmp.Diff(translate.SortedFilters(alone.Filters), translate.SortedFilters(foreign.Filters), protocmp.Transform(), cmpopts.IgnoreUnexported(model.EnvoyFilter{})); diff != "" {
		t.Errorf("another namespace's Redis objects changed the service's EnvoyFilters (-alone +with them):\n%s", diff)
	}
	for _, kind := range []string{model.KindRedisService, model.KindRedisDestination} {
		if v := foreign.Verdicts[model.ObjectRef{Kind: kind, Namespace: "tenant", Name: "x"}]; v.Ready || v.Reason != redisspec.ReasonOtherNamespace {
			t.Errorf("%s of another namespace: %+v, want not ready, %s", kind, v, redisspec.ReasonOtherNamespace)
		}
	}
	root, _ := translateDocs(t, cacheSE+object("RedisService", "istio-system", rsSpec)+object("RedisDestination", "istio-system", rdSpec))
	for _, kind := range []string{model.KindRedisService, model.KindRedisDestination} {
		if v := root.Verdicts[model.ObjectRef{Kind: kind, Namespace: "istio-system", Name: "x"}]; !v.Ready {
			t.Errorf("%s of the root namespace: %+v, want it in effect", kind, v)
		}
	}
	if cmp.Equal(translate.SortedFilters(alone.Filters), translate.SortedFilters(root.Filters), protocmp.Transform(), cmpopts.IgnoreUnexported(model.EnvoyFilter{})) {
		t.Error("the root namespace's Redis objects changed nothing")
	}
}
