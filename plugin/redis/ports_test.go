package redis

import (
	"errors"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

// portsServiceEntry is a ServiceEntry in namespace redis with tcp-redis ports.
func portsServiceEntry(name, host string, ports ...uint32) model.Object {
	se := &networking.ServiceEntry{
		Hosts: []string{host}, Addresses: []string{"240.240.31.1"}, Resolution: networking.ServiceEntry_STATIC,
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": name}},
	}
	for i, p := range ports {
		se.Ports = append(se.Ports, &networking.ServicePort{Number: p, Name: "tcp-redis-" + string(rune('a'+i)), Protocol: "TCP"})
	}
	return model.Object{Name: name, Namespace: "redis", ResourceVersion: "1", Spec: se}
}

// portsPush is a push of three services: cache (6379), edge (the highest port,
// 65535) and pair (6379 and 65535).
func portsPush(t *testing.T, rs ...*model.Config[*redisspec.RedisServiceSpec]) (*generator.Context, *model.Service) {
	t.Helper()
	snap := &model.Snapshot{DomainSuffix: generatortest.Context.DomainSuffix, ServiceEntries: []model.Object{
		portsServiceEntry("cache", "cache.redis.example", 6379),
		portsServiceEntry("edge", "edge.redis.example", 65535),
		portsServiceEntry("pair", "pair.redis.example", 6379, 65535),
	}}
	for _, r := range rs {
		snap.RedisServices = append(snap.RedisServices, model.Object{Name: r.Name, Namespace: r.Namespace, Spec: r.Spec})
	}
	ctx, services := generatortest.Push(t, snap)
	for _, svc := range services {
		if svc.Key() == "redis/cache" {
			return ctx, svc
		}
	}
	t.Fatal("no service redis/cache")
	return nil, nil
}

// TestRouteDestinationPortBounds: 0 means "not set"; 1 to 65535 must be a tcp-redis
// port of the host; anything else is not a port number, whatever the host's ports.
func TestRouteDestinationPortBounds(t *testing.T) {
	ctx, svc := portsPush(t)
	for _, c := range []struct {
		name string
		dest redisspec.RouteDestination
		want string // cluster, or a part of the error
	}{
		{"0 on the service itself: the current port", redisspec.RouteDestination{Host: "cache.redis.example"}, "outbound|6379||cache.redis.example"},
		{"0 on a host with one tcp-redis port: that port", redisspec.RouteDestination{Host: "edge.redis.example"}, "outbound|65535||edge.redis.example"},
		{"0 on a host with two tcp-redis ports: set port", redisspec.RouteDestination{Host: "pair.redis.example"}, "several tcp-redis ports"},
		{"65535, a tcp-redis port of the host", redisspec.RouteDestination{Host: "edge.redis.example", Port: 65535}, "outbound|65535||edge.redis.example"},
		{"65535 of a host with two ports", redisspec.RouteDestination{Host: "pair.redis.example", Port: 65535}, "outbound|65535||pair.redis.example"},
		{"1, the lowest port, not one of the host", redisspec.RouteDestination{Host: "edge.redis.example", Port: 1}, "port 1 of edge.redis.example is not a tcp-redis port"},
		{"65535, not a port of the host", redisspec.RouteDestination{Host: "cache.redis.example", Port: 65535}, "port 65535 of cache.redis.example is not a tcp-redis port"},
		{"65536", redisspec.RouteDestination{Host: "edge.redis.example", Port: 65536}, "route.port 65536 is not a port number"},
		// 65536 + 65535: a uint16 conversion would make it the host's port.
		{"131071", redisspec.RouteDestination{Host: "edge.redis.example", Port: 131071}, "route.port 131071 is not a port number"},
		{"-1", redisspec.RouteDestination{Host: "edge.redis.example", Port: -1}, "route.port -1 is not a port number"},
		{"-1 on the service itself", redisspec.RouteDestination{Host: "cache.redis.example", Port: -1}, "route.port -1 is not a port number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &destinations{ctx: ctx, svc: svc, port: svc.Ports[0], namespace: "redis"}
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
}

// TestRouteDestinationPortThroughTheGenerator: the bounds hold for mirrors too, and
// the error reaches the translation as an Invalid error of the RedisService, naming
// the field.
func TestRouteDestinationPortThroughTheGenerator(t *testing.T) {
	rs := func(port, mirrorPort int32) *model.Config[*redisspec.RedisServiceSpec] {
		return &model.Config[*redisspec.RedisServiceSpec]{
			Name: "cache", Namespace: "redis",
			Spec: &redisspec.RedisServiceSpec{
				Host: []string{"cache.redis.example"},
				Redis: []redisspec.RedisRoute{{
					Match:  &redisspec.RouteMatch{Key: redisspec.KeyMatch{Prefix: "u:"}},
					Route:  redisspec.RouteDestination{Host: "pair.redis.example", Port: port},
					Mirror: []redisspec.Mirror{{Route: redisspec.RouteDestination{Host: "edge.redis.example", Port: mirrorPort}}},
				}},
			},
		}
	}
	ctx, svc := portsPush(t, rs(65535, 65535))
	efs, err := New().Generate(ctx, svc, svc.Ports[0])
	if !generatortest.CheckResult(t, efs, err) {
		t.Fatal(err)
	}
	var routes []string
	for _, ef := range efs {
		doc, err := ef.Document()
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, string(doc))
	}
	all := strings.Join(routes, "\n")
	for _, want := range []string{"outbound|65535||pair.redis.example", "outbound|65535||edge.redis.example"} {
		if !strings.Contains(all, want) {
			t.Errorf("the filters do not route to %s", want)
		}
	}

	for _, c := range []struct {
		route, mirror int32
		want          string
	}{
		{65536, 65535, "spec.redis[0].route.port 65536 is not a port number"},
		{-1, 65535, "spec.redis[0].route.port -1 is not a port number"},
		{65535, 65536, "spec.redis[0].mirror[0].route.port 65536 is not a port number"},
		{65535, -1, "spec.redis[0].mirror[0].route.port -1 is not a port number"},
	} {
		ctx, svc := portsPush(t, rs(c.route, c.mirror))
		efs, err := New().Generate(ctx, svc, svc.Ports[0])
		var oe *generator.ObjectError
		if efs != nil || !errors.As(err, &oe) || oe.Ref != (model.ObjectRef{Kind: model.KindRedisService, Namespace: "redis", Name: "cache"}) ||
			oe.Reason != redisspec.ReasonInvalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("route port %d, mirror port %d: %d filters, %v; want an Invalid error of RedisService redis/cache with %q", c.route, c.mirror, len(efs), err, c.want)
		}
	}
}
