// Package bootstrap builds the controller's parts and runs them: the xDS config
// watcher, the manager (leader election, caches, metrics, probes) and the EnvoyFilter
// controller between them.
package bootstrap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/config"
	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/plugin/redis"
)

// Options configure a Server.
type Options struct {
	IstiodAddr    string
	RootNamespace string
	DomainSuffix  string
	Debounce      envoyfilter.DebounceOptions
	Resync        time.Duration
	Manager       kube.Options
	Plugins       plugin.Options
	// Writers is how many EnvoyFilter writes run at once; 0 means DefaultWriters.
	Writers int
	// XDSBackoff bounds reconnects to istiod.
	XDSInitialBackoff, XDSMaxBackoff time.Duration
}

// DefaultWriters is how many EnvoyFilter writes run at once unless told otherwise:
// about where the apiserver stops getting faster on a small control plane.
const DefaultWriters = 8

// Server is the running controller.
type Server struct {
	mgr        manager.Manager
	watcher    *config.Watcher
	controller *envoyfilter.Controller
	// recheckRedis asks for the Ready condition of every Redis object to be computed again.
	recheckRedis func()
	// cacheSynced is set once the manager's informers (EnvoyFilters, Services, Redis
	// objects, Secrets) have listed everything.
	cacheSynced atomic.Bool
	log         logr.Logger
}

// New wires the parts; Run starts them.
func New(cfg *rest.Config, opts Options, log logr.Logger) (*Server, error) {
	if opts.Manager.Logger.GetSink() == nil {
		opts.Manager.Logger = log
	}
	mgr, err := kube.NewManager(cfg, opts.Manager)
	if err != nil {
		return nil, err
	}
	s := &Server{mgr: mgr, log: log}
	// Our metrics go with controller-runtime's on the manager's metrics endpoint. A
	// process with several managers (tests) cannot register the same names twice there.
	var reg prometheus.Registerer = ctrlmetrics.Registry
	if opts.Manager.SeveralManagersPerProcess {
		reg = prometheus.NewRegistry()
	}
	metrics, err := envoyfilter.NewMetrics(reg, func() bool { return s.watcher.HasSynced() })
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	s.watcher = config.NewWatcher(config.Options{
		Address:      opts.IstiodAddr,
		DomainSuffix: opts.DomainSuffix,
		// istiod scopes what it sends like a sidecar's view from this namespace; the
		// root namespace sees every exported service.
		Namespace:      opts.RootNamespace,
		InitialBackoff: opts.XDSInitialBackoff,
		MaxBackoff:     opts.XDSMaxBackoff,
		Logger:         log.WithName("xds"),
		Observer:       metrics,
	}, func(config.Event) {
		s.controller.Trigger()
		// A service appearing or changing can change what a Redis object says.
		s.recheckRedis()
	})
	src := &source{watcher: s.watcher, cache: mgr.GetCache(), domainSuffix: opts.DomainSuffix, log: log.WithName("source")}
	s.controller = envoyfilter.NewController(envoyfilter.ControllerOptions{
		Context:  envoyfilter.Context{RootNamespace: opts.RootNamespace, DomainSuffix: opts.DomainSuffix},
		Registry: plugin.Registry(opts.Plugins),
		Debounce: opts.Debounce,
		Resync:   opts.Resync,
		Source:   src,
		Applier: &envoyfilter.Applier{
			Cache:      mgr.GetCache(),
			Client:     mgr.GetClient(),
			Live:       mgr.GetAPIReader(),
			MaxElapsed: 10 * time.Second,
			Workers:    cmp.Or(opts.Writers, DefaultWriters),
			CacheWait:  10 * time.Second,
			Metrics:    metrics,
			Log:        log.WithName("apply"),
		},
		Recorder: mgr.GetEventRecorder("aeraki"),
		Metrics:  metrics,
		Log:      log.WithName("envoyfilter"),
	})
	if err := mgr.Add(s.controller); err != nil {
		return nil, fmt.Errorf("adding the EnvoyFilter controller: %w", err)
	}
	s.recheckRedis, err = kube.SetupRedis(mgr, kube.RedisOptions{
		Trigger: s.controller.Trigger,
		Check:   redisCheck(src, &envoyfilter.Context{RootNamespace: opts.RootNamespace, DomainSuffix: opts.DomainSuffix}),
	})
	if err != nil {
		return nil, fmt.Errorf("adding the Redis reconcilers: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("xds", func(*http.Request) error {
		if !s.watcher.HasSynced() {
			return errors.New("istiod config not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("cache", func(*http.Request) error {
		if !s.cacheSynced.Load() {
			return errors.New("the caches of Kubernetes objects are not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs everything until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.watchKube(ctx); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- s.watcher.Run(ctx) }()
	go func() {
		// Waits for the manager to start the cache, then for every informer's list.
		if s.mgr.GetCache().WaitForCacheSync(ctx) {
			s.cacheSynced.Store(true)
		}
	}()
	go func() {
		// Redis objects checked before the mesh config arrived say Pending; check them
		// again once it has, even if it holds nothing that causes an event.
		if wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			return s.watcher.HasSynced(), nil
		}) == nil {
			s.recheckRedis()
		}
	}()
	mgrErr := s.mgr.Start(ctx)
	// The manager has stopped, on ctx or on its own failure (a lost lease): the watcher
	// stops with it, and Run returns only once it has.
	cancel()
	watchErr := <-errc
	if mgrErr != nil {
		return fmt.Errorf("manager: %w", mgrErr)
	}
	if watchErr != nil && !errors.Is(watchErr, context.Canceled) {
		return fmt.Errorf("xds watcher: %w", watchErr)
	}
	return nil
}

// redisCheck computes the Ready condition of a Redis object from the current config
// with the generator's own resolution.
func redisCheck(src *source, base *envoyfilter.Context) func(client.Object) kube.Verdict {
	return func(obj client.Object) kube.Verdict {
		if !src.HasSynced() {
			return kube.Verdict{Reason: redisv1alpha1.ReasonPending, Message: "waiting for the mesh config from istiod"}
		}
		snap := src.Snapshot()
		services := model.BuildServices(snap)
		return kube.Verdict(redis.Check(base.ForPush(snap, services), services, obj))
	}
}

// watchKube triggers a push when one of our EnvoyFilters changes (someone edited or
// deleted it: the push restores it) or a Service that matters changes.
func (s *Server) watchKube(ctx context.Context) error {
	efs, err := s.mgr.GetCache().GetInformer(ctx, &clientnetworking.EnvoyFilter{})
	if err != nil {
		return fmt.Errorf("informer for EnvoyFilters: %w", err)
	}
	trigger := func(any) { s.controller.Trigger() }
	if _, err := efs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    trigger,
		UpdateFunc: func(_, obj any) { trigger(obj) },
		DeleteFunc: trigger,
	}); err != nil {
		return err
	}
	// istiod pushes no change of a ServiceEntry's annotations alone (they are not part
	// of its service model); the apiserver's copy, kept as metadata only, has them.
	ses, err := s.mgr.GetCache().GetInformer(ctx, serviceEntryMetadata())
	if err != nil {
		return fmt.Errorf("informer for ServiceEntries: %w", err)
	}
	if _, err := ses.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(o, n any) {
			old, _ := o.(*metav1.PartialObjectMetadata)
			cur, _ := n.(*metav1.PartialObjectMetadata)
			if old != nil && cur != nil && !maps.Equal(old.Annotations, cur.Annotations) {
				s.controller.Trigger()
			}
		},
	}); err != nil {
		return err
	}
	svcs, err := s.mgr.GetCache().GetInformer(ctx, &corev1.Service{})
	if err != nil {
		return fmt.Errorf("informer for Services: %w", err)
	}
	asService := func(obj any) *corev1.Service {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		svc, _ := obj.(*corev1.Service)
		return svc
	}
	_, err = svcs.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if kube.ServiceChangeMatters(nil, asService(obj)) {
				s.controller.Trigger()
			}
		},
		UpdateFunc: func(o, n any) {
			if kube.ServiceChangeMatters(asService(o), asService(n)) {
				s.controller.Trigger()
			}
		},
		DeleteFunc: func(obj any) {
			if kube.ServiceChangeMatters(asService(obj), nil) {
				s.controller.Trigger()
			}
		},
	})
	return err
}

// source is the translation input: Istio config from istiod, completed by the
// Kubernetes Services in the manager's cache.
type source struct {
	watcher      *config.Watcher
	cache        client.Reader
	domainSuffix string
	log          logr.Logger
}

func (s *source) HasSynced() bool { return s.watcher.HasSynced() }

func (s *source) Snapshot() *model.Snapshot {
	ses, vss, drs := s.watcher.Snapshot()
	snap := &model.Snapshot{
		ServiceEntries:          ses,
		VirtualServices:         vss,
		DestinationRules:        drs,
		DomainSuffix:            s.domainSuffix,
		KubeService:             s.kubeService,
		ServiceEntryAnnotations: s.serviceEntryAnnotations,
		Secret:                  s.secret,
	}
	ctx := context.Background()
	var rss redisv1alpha1.RedisServiceList
	if err := s.cache.List(ctx, &rss); err != nil {
		s.log.Error(err, "listing RedisServices from the cache")
	}
	for i := range rss.Items {
		snap.RedisServices = append(snap.RedisServices, model.RedisConfig(&rss.Items[i]))
	}
	var rds redisv1alpha1.RedisDestinationList
	if err := s.cache.List(ctx, &rds); err != nil {
		s.log.Error(err, "listing RedisDestinations from the cache")
	}
	for i := range rds.Items {
		snap.RedisDestinations = append(snap.RedisDestinations, model.RedisConfig(&rds.Items[i]))
	}
	return snap
}

func (s *source) secret(namespace, name string) *corev1.Secret {
	secret := &corev1.Secret{}
	if err := s.cache.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, secret); err != nil {
		return nil
	}
	return secret
}

// serviceEntryMetadata is an empty ServiceEntry as metadata only: the cache keeps
// names, labels and annotations, not specs (those come from istiod).
func serviceEntryMetadata() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "ServiceEntry"}}
}

func (s *source) serviceEntryAnnotations(namespace, name string) (map[string]string, bool) {
	obj := serviceEntryMetadata()
	if err := s.cache.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, obj); err != nil {
		return nil, false
	}
	return obj.Annotations, true
}

func (s *source) kubeService(namespace, name string) *corev1.Service {
	svc := &corev1.Service{}
	if err := s.cache.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, svc); err != nil {
		return nil
	}
	return svc
}
