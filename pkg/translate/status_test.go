package translate_test

import (
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
)

// TestCheck: one case per Reason, for both kinds. The objects are read with the
// services, as the reconciler's push would have them; messages never show a password.
func TestCheck(t *testing.T) {
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
		return "---\napiVersion: redis.aeraki.io/v1alpha1\nkind: RedisService\nmetadata: {name: " + name + ", namespace: redis}\nspec:\n" + spec
	}
	rd := func(name, spec string) string {
		return "---\napiVersion: redis.aeraki.io/v1alpha1\nkind: RedisDestination\nmetadata: {name: " + name + ", namespace: redis}\nspec:\n" + spec
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
			checked: "RedisService/cache", reason: v1alpha1.ReasonAccepted, message: "applies to ServiceEntry redis/cache",
		},
		{
			name:    "RedisDestination accepted on two services",
			docs:    rd("all", "  host: '*.redis.svc.cluster.local'\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: 3}}}\n") + serviceEntry("more", "more.redis.svc.cluster.local", "240.240.30.4", "tcp-redis:6379"),
			checked: "RedisDestination/all", reason: v1alpha1.ReasonAccepted, message: "applies to ServiceEntry redis/more, ServiceEntry redis/users",
		},
		{
			name:    "no service has the host",
			docs:    rs("cache", "  host: [nothing]\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonNoMatchingService, message: "nothing.redis.svc.cluster.local",
		},
		{
			name:    "the host's service has no tcp-redis port",
			docs:    rd("dubbo", "  host: dubbo\n"),
			checked: "RedisDestination/dubbo", reason: v1alpha1.ReasonNoMatchingService,
		},
		{
			name:    "an earlier RedisService binds the service",
			docs:    rs("a", "  host: [cache.redis.example]\n") + rs("b", "  host: [cache.redis.example, users]\n"),
			checked: "RedisService/b", reason: v1alpha1.ReasonConflict, message: "RedisService redis/a",
		},
		{
			name:    "the earlier one is accepted",
			docs:    rs("a", "  host: [cache.redis.example]\n") + rs("b", "  host: [cache.redis.example]\n"),
			checked: "RedisService/a", reason: v1alpha1.ReasonAccepted,
		},
		{
			name:    "an earlier RedisDestination binds the service",
			docs:    rd("a", "  host: cache.redis.example\n") + rd("b", "  host: cache.redis.example\n"),
			checked: "RedisDestination/b", reason: v1alpha1.ReasonConflict, message: "RedisDestination redis/a",
		},
		{
			name:    "two routes with one prefix",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis:\n  - {match: {key: {prefix: 'u:'}}, route: {host: users}}\n  - {match: {key: {prefix: 'u:'}}, route: {host: cache.redis.example}}\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonConflict, message: `prefix "u:"`,
		},
		{
			name:    "two catch-all routes",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis:\n  - {route: {host: users}}\n  - {route: {host: cache.redis.example}}\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonConflict, message: "catch-all",
		},
		{
			name:    "RedisService Secret missing",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: gone}}}\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonSecretNotFound, message: "Secret redis/gone",
		},
		{
			name:    "RedisDestination Secret missing",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: gone}}}}}\n"),
			checked: "RedisDestination/cache", reason: v1alpha1.ReasonSecretNotFound, message: "Secret redis/gone",
		},
		{
			name:    "RedisService Secret key missing",
			docs:    rs("cache", "  host: [cache.redis.example]\n  settings: {auth: {secret: {name: auth, passwordKey: pass}}}\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonSecretKeyNotFound, message: `"pass"`,
		},
		{
			name:    "RedisDestination named username key missing",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {auth: {secret: {name: auth, usernameKey: username}}}}}\n"),
			checked: "RedisDestination/cache", reason: v1alpha1.ReasonSecretKeyNotFound, message: `"username"`,
		},
		{
			name:    "route to a service without tcp-redis port",
			docs:    rs("cache", "  host: [cache.redis.example]\n  redis: [{route: {host: dubbo}}]\n"),
			checked: "RedisService/cache", reason: v1alpha1.ReasonInvalid, message: "not a Redis service",
		},
		{
			name:    "bad discovery endpoint",
			docs:    rd("cache", "  host: cache.redis.example\n  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER, discoveryEndpoints: ['shard-0']}}}\n"),
			checked: "RedisDestination/cache", reason: v1alpha1.ReasonInvalid, message: "discoveryEndpoints[0]",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, services, objs := push(t, base+c.docs)
			kind, name, _ := strings.Cut(c.checked, "/")
			var obj any
			for _, o := range objs.RedisServices {
				if kind == "RedisService" && o.Name == name {
					obj = o
				}
			}
			for _, o := range objs.RedisDestinations {
				if kind == "RedisDestination" && o.Name == name {
					obj = o
				}
			}
			if obj == nil {
				t.Fatalf("no %s in the input", c.checked)
			}
			v := Check(ctx, services, obj)
			if v.Reason != c.reason || v.Ready != (c.reason == v1alpha1.ReasonAccepted) || !strings.Contains(v.Message, c.message) {
				t.Errorf("got %+v, want reason %s and a message with %q", v, c.reason, c.message)
			}
			if strings.Contains(v.Message, password) {
				t.Errorf("message shows the password: %s", v.Message)
			}
		})
	}
	if v := Check(nil, nil, "a string"); v.Ready || v.Reason != v1alpha1.ReasonInvalid {
		t.Errorf("unknown object: %+v, want Invalid", v)
	}
}
