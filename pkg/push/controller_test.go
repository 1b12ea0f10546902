package push

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"

	"github.com/go-logr/logr/testr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/plugin"
)

// source serves a snapshot, or an error.
type source struct {
	mu   sync.Mutex
	snap *model.Snapshot
	err  error
	// changed says the snapshot was set since it was last read: the next push
	// translates it whole.
	changed bool
	// onChanges, if set, runs when a push asks what changed.
	onChanges func()
}

func (s *source) HasSynced() bool { return true }

func (s *source) Snapshot() (*model.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed = false
	return s.snap, s.err
}

func (s *source) Changes() (model.Delta, error) {
	if s.onChanges != nil {
		s.onChanges()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	whole := s.changed
	s.changed = false
	return model.Delta{Whole: whole}, s.err
}

// setYAML serves the snapshot of YAML documents.
func (s *source) setYAML(t *testing.T, docs ...string) {
	t.Helper()
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(strings.Join(docs, "\n---\n")), t.Name()); len(errs) > 0 {
		t.Fatal(errs)
	}
	s.set(objs.Snapshot("cluster.local"), nil)
}

func (s *source) set(snap *model.Snapshot, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap, s.err, s.changed = snap, err, true
}

// statusSink records what pushes publish.
type statusSink struct {
	mu        sync.Mutex
	published []map[model.ObjectRef]model.Verdict
}

func (s *statusSink) Publish(v map[model.ObjectRef]model.Verdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published = append(s.published, v)
}

func (s *statusSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.published)
}

// newController returns a controller over a fake apiserver client that counts writes;
// edits change its options.
func newController(t *testing.T, src Source, status StatusSink, debounce DebounceOptions, edits ...func(*ControllerOptions)) (*Controller, *atomic.Int64) {
	t.Helper()
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	count := func() { writes.Add(1) }
	c := fake.NewClientBuilder().WithScheme(scheme).WithIndex(&clientnetworking.EnvoyFilter{}, apply.OwnerIndex, apply.IndexOwner).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count()
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			count()
			return c.Update(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			count()
			return c.Delete(ctx, obj, opts...)
		},
	}).Build()
	opts := ControllerOptions{
		Context:  generator.Context{RootNamespace: fixture.Namespace, DomainSuffix: "cluster.local"},
		Registry: plugin.Registry(plugin.Options{}),
		Debounce: debounce,
		Source:   src,
		Applier:  &apply.Applier{Cache: c, Client: c, Live: c, Workers: 2, Log: testr.New(t)},
		Status:   status,
		Log:      testr.New(t),
	}
	for _, edit := range edits {
		edit(&opts)
	}
	return NewController(opts), &writes
}

// routeSink records the route configurations pushes serve.
type routeSink struct {
	mu  sync.Mutex
	set []map[string]*model.RouteConfig
}

func (s *routeSink) SetRoutes(routes map[string]*model.RouteConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = append(s.set, routes)
	return nil
}

func (s *routeSink) last() map[string]*model.RouteConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.set) == 0 {
		return nil
	}
	return s.set[len(s.set)-1]
}

// withRoutes gives the controller a route server, and an election it has not won.
func withRoutes(routes RouteSink, elected <-chan struct{}) func(*ControllerOptions) {
	return func(o *ControllerOptions) {
		o.Context.RouteDiscovery = generatortest.RouteDiscovery
		o.Routes = routes
		o.Elected = elected
	}
}

// A replica that does not lead serves the routes of its own translation and writes,
// reports and publishes nothing; once elected, it writes.
func TestFollowerServesRoutesAndWritesNothing(t *testing.T) {
	src := &source{}
	src.set(fixture.Snapshot(fixture.Dubbo, 3), nil)
	status, routes, elected := &statusSink{}, &routeSink{}, make(chan struct{})
	ctrl, writes := newController(t, src, status, DebounceOptions{Quiet: time.Millisecond, Max: 20 * time.Millisecond}, withRoutes(routes, elected))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ctrl.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for routes.last() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rc := routes.last()["aeraki-shared-dubbo-20880"]; rc == nil {
		t.Fatalf("a follower served no routes of the shared port: %v", routes.last())
	}
	if n := writes.Load(); n != 0 || status.count() != 0 {
		t.Fatalf("a follower wrote %d times and published %d verdict sets", n, status.count())
	}
	close(elected)
	// Three inbound filters, the shared port's and the route server's cluster.
	for writes.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 5 || status.count() == 0 {
		t.Fatalf("once elected: %d writes (want 5), %d verdict sets published", n, status.count())
	}
}

// A push whose snapshot cannot be read fails with that error, writes nothing and
// publishes no verdicts; once the snapshot reads again, the push writes.
func TestPushFailsOnASnapshotError(t *testing.T) {
	src := &source{}
	status := &statusSink{}
	ctrl, writes := newController(t, src, status, DebounceOptions{})
	errRead := errors.New("listing RedisServices: the cache is unavailable")
	src.set(nil, errRead)
	if err := ctrl.Push(t.Context()); !errors.Is(err, errRead) {
		t.Fatalf("push = %v, want the snapshot's error", err)
	}
	if n := writes.Load(); n != 0 || status.count() != 0 {
		t.Fatalf("a failed push wrote %d times and published %d verdict sets", n, status.count())
	}
	src.set(fixture.Snapshot(fixture.Dubbo, 3), nil)
	if err := ctrl.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 6 || status.count() != 1 {
		t.Fatalf("push wrote %d times (want 6: two filters each of three services) and published %d verdict sets (want 1)", n, status.count())
	}
}

// A resync asked for while a push that was not one fails is still owed: the failed
// push does not put back its own "no resync" over it.
func TestResyncAskedDuringAFailedPushStays(t *testing.T) {
	src := &source{}
	src.set(fixture.Snapshot(fixture.Dubbo, 1), nil)
	ctrl, _ := newController(t, src, &statusSink{}, DebounceOptions{})
	if err := ctrl.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
	src.set(nil, errors.New("the cache is unavailable"))
	src.onChanges = ctrl.Resync
	if err := ctrl.Push(t.Context()); err == nil {
		t.Fatal("the push succeeded, want it to fail on the source's error")
	}
	if !ctrl.full.Load() {
		t.Fatal("the resync asked for during the failed push is lost")
	}
}

// Start retries a failed push without waiting for a change, and stops every
// goroutine it started when its context ends (TestMain checks for leaks).
func TestStartRetriesAFailedPush(t *testing.T) {
	src := &source{}
	src.set(nil, errors.New("the cache is unavailable"))
	ctrl, writes := newController(t, src, &statusSink{}, DebounceOptions{Quiet: time.Millisecond, Max: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ctrl.Start(ctx) }()
	time.Sleep(50 * time.Millisecond) // a few failed pushes
	src.set(fixture.Snapshot(fixture.Dubbo, 1), nil)
	deadline := time.Now().Add(10 * time.Second)
	for writes.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 2 {
		t.Fatalf("after the snapshot reads again the retry wrote %d times, want 2", n)
	}
}

// With a route server, no push happens before it can serve: filters that name routes
// no sidecar can fetch would break every shared port.
func TestNoPushBeforeTheRouteServerCanServe(t *testing.T) {
	src := &source{}
	src.set(fixture.Snapshot(fixture.Dubbo, 2), nil)
	var ready atomic.Bool
	routes := &routeSink{}
	ctrl, writes := newController(t, src, &statusSink{}, DebounceOptions{Quiet: time.Millisecond, Max: 20 * time.Millisecond},
		withRoutes(routes, nil), func(o *ControllerOptions) { o.RoutesReady = ready.Load })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ctrl.Start(ctx) }()
	time.Sleep(300 * time.Millisecond) // what Start would have needed to push
	if n := writes.Load(); n != 0 || routes.last() != nil {
		t.Fatalf("before the route server could serve: %d writes, routes %v", n, routes.last())
	}
	ready.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for writes.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 4 {
		t.Fatalf("once it can serve: %d writes, want 4 (two inbound filters, the port's, the route server's cluster)", n)
	}
}

// The controller pushes only once it knows the istiod, generates for it, and
// regenerates every service when it changes: a RedisDestination with maxConnections is
// IstiodTooOld (nothing written) for an istiod before 1.31, and applied once istiod is
// 1.31, although the service itself did not change.
func TestPushForTheIstiod(t *testing.T) {
	src := &source{}
	src.setYAML(t, fixture.ServiceEntryYAML("redis", "cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379")+
		fixture.RedisDestinationYAML("redis", "cache", "cache.redis.example", "{tcp: {maxConnections: 5}}"))
	var istiod atomic.Pointer[model.Istiod] // nil: not known yet
	status := &statusSink{}
	ctrl, writes := newController(t, src, status, DebounceOptions{Quiet: time.Millisecond, Max: 20 * time.Millisecond},
		func(o *ControllerOptions) {
			o.Istiod = func() (model.Istiod, bool) {
				if i := istiod.Load(); i != nil {
					return *i, true
				}
				return model.Istiod{}, false
			}
		})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ctrl.Start(ctx) }()
	time.Sleep(300 * time.Millisecond) // what Start would have needed to push
	if n := status.count(); n != 0 || writes.Load() != 0 {
		t.Fatalf("before the istiod was known: %d pushes published, %d writes", n, writes.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	ref := model.ObjectRef{Kind: model.KindRedisDestination, Namespace: "redis", Name: "cache"}
	verdict := func() model.Verdict {
		status.mu.Lock()
		defer status.mu.Unlock()
		return status.published[len(status.published)-1][ref]
	}
	istiod.Store(new(model.NewIstiod("1.31-dev")))
	if err := ctrl.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := verdict(); v.Reason != redisspec.ReasonIstiodTooOld || writes.Load() != 0 {
		t.Fatalf("istiod 1.31-dev: verdict %+v and %d writes, want IstiodTooOld and none", v, writes.Load())
	}
	istiod.Store(new(model.NewIstiod("1.31.0")))
	if err := ctrl.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := verdict(); v.Reason != redisspec.ReasonAccepted || writes.Load() == 0 {
		t.Fatalf("istiod 1.31.0: verdict %+v and %d writes, want Accepted and the service's filters", v, writes.Load())
	}
}
