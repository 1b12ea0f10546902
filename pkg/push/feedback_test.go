package push

import (
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/plugin"
)

const redisDocs = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: shop}
spec:
  hosts: [cache.shop.svc.cluster.local]
  addresses: [240.0.0.7]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  resolution: STATIC
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: shop, generation: 3}
spec:
  host: [cache]
  settings: {opTimeout: 2s}
`

// While proxies reject a Redis service's EnvoyFilters, the RedisService that
// configures it is not Ready, and says why; once they accept, it is Ready again.
func TestRedisObjectsTellOfRejections(t *testing.T) {
	src := &source{}
	src.setYAML(t, redisDocs)
	status := &statusSink{}
	c, _ := newController(t, src, status, DebounceOptions{}, func(o *ControllerOptions) {
		o.Feedback = &FeedbackOptions{Protocols: plugin.FilterProtocols(), Settle: time.Second, Confirm: 2}
	})
	ref := model.ObjectRef{Kind: model.KindRedisService, Namespace: "shop", Name: "cache"}
	push := func() model.Verdict {
		t.Helper()
		if err := c.Push(t.Context()); err != nil {
			t.Fatal(err)
		}
		status.mu.Lock()
		defer status.mu.Unlock()
		return status.published[len(status.published)-1][ref]
	}
	if v := push(); !v.Ready {
		t.Fatalf("before any rejection: %+v", v)
	}
	rejecting := &model.ProxySync{At: time.Now(), Proxies: 2, InSync: 1, Rejecting: []*model.ProxyStatus{{
		ID: "client-0.apps", Namespace: "apps", ListenersSent: time.Now(),
		Listeners: "Error adding/updating listener(s) 240.0.0.7_6379: Proto constraint validation failed (RedisProxyValidationError.Settings: value is required)",
	}}}
	c.ObserveProxies(rejecting)
	v := push()
	if v.Ready || v.Reason != redisspec.ReasonRejectedByProxies || v.Generation != 3 {
		t.Fatalf("while a proxy rejects the service's filters: %+v", v)
	}
	for _, want := range []string{"1 proxy rejects", "ServiceEntry shop/cache", "client-0.apps", "RedisProxyValidationError"} {
		if !strings.Contains(v.Message, want) {
			t.Errorf("message lacks %q: %s", want, v.Message)
		}
	}
	c.ObserveProxies(&model.ProxySync{At: time.Now(), Proxies: 2, InSync: 2})
	if v := push(); !v.Ready {
		t.Fatalf("once the proxies accept again: %+v", v)
	}
}
