// Package bootstrap builds the controller's parts and runs them: the xDS config
// watcher, the manager (leader election, caches, metrics, probes) and the EnvoyFilter
// controller between them.
package bootstrap

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/pkg/rds"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/plugin"
)

// Options configure a Server.
type Options struct {
	IstiodAddr string
	// IstiodSecurity is how aeraki and istiod authenticate each other (TLS and the
	// pod's token by default).
	IstiodSecurity xds.Security
	RootNamespace  string
	DomainSuffix   string
	Debounce       push.DebounceOptions
	Resync         time.Duration
	Manager        kube.Options
	Plugins        plugin.Options
	// Writers is how many EnvoyFilter writes run at once; 0 means DefaultWriters.
	Writers int
	// XDSBackoff bounds reconnects to istiod.
	XDSInitialBackoff, XDSMaxBackoff time.Duration
	// RouteServer serves the routes of shared ports; off when its Addr is empty.
	RouteServer RouteServerOptions
	// SecretPoll is how often Secrets named by Redis objects are read again: the
	// controller watches no Secret (it may read them only where a namespace granted
	// it), so a change is found by the push this triggers. Zero means DefaultSecretPoll.
	SecretPoll time.Duration
	// ProxyStatusInterval is how often the leader asks istiod what its proxies
	// accepted; zero turns sidecar feedback off.
	ProxyStatusInterval time.Duration
	// IstiodVersion, when set, is the version of istiod the EnvoyFilters are for (as
	// istiod reports it: "1.30.3"); empty reads it from istiod.
	IstiodVersion string
	// ContainRejections stands the last accepted EnvoyFilters in for those proxies
	// reject (see push.FeedbackOptions).
	ContainRejections bool
}

// StatusPath is where the metrics server serves push.Status as JSON, for `aeraki
// status`.
const StatusPath = "/debug/status"

// DefaultProxyStatusInterval is how often the leader asks istiod what its proxies
// accepted: a rejection is reported, and contained, within a few of these.
const DefaultProxyStatusInterval = 5 * time.Second

// DefaultSecretPoll is how often Secrets named by Redis objects are read again.
const DefaultSecretPoll = 30 * time.Second

// DefaultWriters is how many EnvoyFilter writes run at once unless told otherwise:
// about where the apiserver stops getting faster on a small control plane.
const DefaultWriters = 8

// Server is the running controller.
type Server struct {
	mgr        manager.Manager
	watcher    *xds.Watcher
	controller *push.Controller
	src        *source
	// cacheSynced is set once the manager's informers (EnvoyFilters, Services, Redis
	// objects, Secrets) have listed everything.
	cacheSynced atomic.Bool
	// stopping is set once Run's context is done: a stop we asked for.
	stopping atomic.Bool
	log      logr.Logger
}

// New wires the parts; Run starts them.
func New(cfg *rest.Config, opts Options, log logr.Logger) (*Server, error) {
	if opts.Manager.Logger.GetSink() == nil {
		opts.Manager.Logger = log
	}
	s := &Server{log: log}
	opts.Manager.Logger = opts.Manager.Logger.WithSink(&stopSink{LogSink: opts.Manager.Logger.GetSink(), stopping: &s.stopping})
	mgr, err := kube.NewManager(cfg, opts.Manager)
	if err != nil {
		return nil, err
	}
	s.mgr = mgr
	// Our metrics go with controller-runtime's on the manager's metrics endpoint. A
	// process with several managers (tests) cannot register the same names twice there.
	var reg prometheus.Registerer = ctrlmetrics.Registry
	if opts.Manager.SeveralManagersPerProcess {
		reg = prometheus.NewRegistry()
	}
	metrics, err := metrics.NewMetrics(reg, metrics.XDS{
		Synced: func() bool { return s.watcher.HasSynced() }, FailureReasons: xds.FailureReasons(),
		RouteRefusalReasons: rds.RefusalReasons(), RouteTypes: plugin.RouteTypes(),
	})
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	watcherOptions := xds.Options{
		Address:      opts.IstiodAddr,
		Security:     opts.IstiodSecurity,
		DomainSuffix: opts.DomainSuffix,
		// istiod scopes what it sends like a sidecar's view from this namespace; the
		// root namespace sees every exported service.
		Namespace:      opts.RootNamespace,
		InitialBackoff: opts.XDSInitialBackoff,
		MaxBackoff:     opts.XDSMaxBackoff,
		Logger:         log.WithName("xds"),
		Observer:       metrics,
	}
	s.watcher = xds.NewWatcher(watcherOptions, func(xds.Event) { s.controller.ConfigChanged() })
	status := &redisStatus{synced: s.watcher.HasSynced}
	src := &source{config: s.watcher, cache: mgr.GetCache(), secrets: mgr.GetAPIReader(), domainSuffix: opts.DomainSuffix, rootNamespace: opts.RootNamespace}
	s.src = src
	routes, discovery, err := newRouteServer(opts, metrics, log)
	if err != nil {
		return nil, err
	}
	var routeSink push.RouteSink
	var routesReady func() bool
	if routes != nil {
		routeSink, routesReady = routes, routes.cert.Ready
		if err := mgr.Add(everyReplica(routes.cert.Run)); err != nil {
			return nil, err
		}
		if err := mgr.Add(everyReplica(routes.serve)); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("routes", func(*http.Request) error { return routes.ready() }); err != nil {
			return nil, err
		}
	}
	istiod := &istiodVersion{}
	if opts.IstiodVersion != "" {
		istiod.set(model.NewIstiod(opts.IstiodVersion))
	} else if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		istiod.run(ctx, watcherOptions, s.watcher.HasSynced, func() { s.controller.Trigger() }, log.WithName("istiod"))
		return nil
	})); err != nil {
		return nil, err
	}
	s.controller = push.NewController(push.ControllerOptions{
		Context:     generator.Context{RootNamespace: opts.RootNamespace, DomainSuffix: opts.DomainSuffix, RouteDiscovery: discovery},
		Istiod:      istiod.get,
		Routes:      routeSink,
		RoutesReady: routesReady,
		Elected:     mgr.Elected(),
		Registry:    plugin.Registry(opts.Plugins),
		Debounce:    opts.Debounce,
		Resync:      opts.Resync,
		Source:      src,
		Applier: &apply.Applier{
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
		Status:   status,
		Feedback: feedbackOptions(opts),
		Log:      log.WithName("push"),
	})
	if err := mgr.Add(s.controller); err != nil {
		return nil, fmt.Errorf("adding the EnvoyFilter controller: %w", err)
	}
	// Served with the metrics: over HTTPS to whom the apiserver authorizes (the
	// aeraki-status-reader ClusterRole), unless the metrics are plain.
	if err := mgr.AddMetricsServerExtraHandler(StatusPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(s.controller.Status()); err != nil {
			log.V(1).Info("writing the status", "error", err.Error())
		}
	})); err != nil {
		return nil, err
	}
	if opts.ProxyStatusInterval > 0 {
		// The leader's alone: it is the one that wrote what proxies answer for.
		poller := xds.NewProxyPoller(watcherOptions, opts.ProxyStatusInterval, s.controller.ObserveProxies)
		if err := mgr.Add(manager.RunnableFunc(poller.Run)); err != nil {
			return nil, err
		}
	}
	if err := mgr.Add(everyReplica(func(ctx context.Context) error {
		pollSecrets(ctx, mgr.GetCache(), cmp.Or(opts.SecretPoll, DefaultSecretPoll), func() {
			src.changed.secretsPolled()
			s.controller.Trigger()
		}, log)
		return nil
	})); err != nil {
		return nil, err
	}
	status.recheck, err = kube.SetupRedis(mgr, kube.RedisOptions{Trigger: s.controller.ConfigChanged, Verdict: status.verdict})
	if err != nil {
		return nil, fmt.Errorf("adding the Redis reconcilers: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("xds", func(*http.Request) error { return xdsReady(s.watcher) }); err != nil {
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

// xdsState is what /readyz needs of the config watcher.
type xdsState interface {
	LastError() (reason, message string)
	HasSynced() bool
}

// xdsReady fails while the connection to istiod fails, saying why and what to fix,
// and until istiod's config has been received.
func xdsReady(w xdsState) error {
	if reason, message := w.LastError(); reason != "" {
		return fmt.Errorf("istiod connection failing (%s): %s", reason, message)
	}
	if !w.HasSynced() {
		return errors.New("istiod config not synced yet")
	}
	return nil
}

// Run runs everything until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	context.AfterFunc(ctx, func() { s.stopping.Store(true) })
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

// watchKube triggers a push when one of our EnvoyFilters changes (someone edited or
// deleted it: the push restores it), or a Service, ServiceEntry, EndpointSlice or
// Redis object changes in a way that matters; and records what changed for the push.
func (s *Server) watchKube(ctx context.Context) error {
	if err := apply.WatchCluster(ctx, s.mgr.GetCache(), s.controller.ClusterChanged); err != nil {
		return err
	}
	// istiod pushes no change of a ServiceEntry's annotations alone (they are not part
	// of its service model), and sends no status, where Istio writes the addresses
	// it allocates: the apiserver's copy, kept without its spec, has both.
	ses, err := s.mgr.GetCache().GetInformer(ctx, &clientnetworkingv1.ServiceEntry{})
	if err != nil {
		return fmt.Errorf("informer for ServiceEntries: %w", err)
	}
	if _, err := ses.AddEventHandler(onChange(kube.ServiceEntryChangeMatters, func(se *clientnetworkingv1.ServiceEntry) {
		s.src.changed.serviceEntry(se.Namespace, se.Name)
		s.controller.ConfigChanged()
	})); err != nil {
		return err
	}
	svcs, err := s.mgr.GetCache().GetInformer(ctx, &corev1.Service{})
	if err != nil {
		return fmt.Errorf("informer for Services: %w", err)
	}
	if _, err := svcs.AddEventHandler(onChange(kube.ServiceChangeMatters, func(svc *corev1.Service) {
		s.src.changed.kubeService(svc.Namespace, svc.Name)
		s.controller.ConfigChanged()
	})); err != nil {
		return err
	}
	if err := s.watchRedis(ctx); err != nil {
		return err
	}
	// A headless Service's endpoints are its clients' listeners: pods coming and
	// going change its EnvoyFilter (and only its: the translation reuses the rest).
	// Indexed by Service, so that a push reads a headless Service's slices without
	// scanning its namespace's.
	if err := s.mgr.GetFieldIndexer().IndexField(ctx, &discoveryv1.EndpointSlice{}, endpointSliceService, func(o client.Object) []string {
		return []string{o.GetLabels()[discoveryv1.LabelServiceName]}
	}); err != nil {
		return fmt.Errorf("indexing EndpointSlices: %w", err)
	}
	epsInformer, err := s.mgr.GetCache().GetInformer(ctx, &discoveryv1.EndpointSlice{})
	if err != nil {
		return fmt.Errorf("informer for EndpointSlices: %w", err)
	}
	onSlice := func(obj any) {
		eps := eventObject[*discoveryv1.EndpointSlice](obj)
		if eps == nil {
			return
		}
		svc := &corev1.Service{}
		key := types.NamespacedName{Namespace: eps.Namespace, Name: eps.Labels[discoveryv1.LabelServiceName]}
		if key.Name == "" || s.mgr.GetCache().Get(ctx, key, svc) != nil {
			return
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone && kube.HasSupportedPort(svc) {
			s.src.changed.kubeService(svc.Namespace, svc.Name)
			s.controller.Trigger()
		}
	}
	_, err = epsInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: onSlice,
		UpdateFunc: func(o, n any) {
			// Trimmed, most updates of a slice leave it as it was.
			if kube.EndpointSliceChangeMatters(eventObject[*discoveryv1.EndpointSlice](o), eventObject[*discoveryv1.EndpointSlice](n)) {
				onSlice(n)
			}
		},
		DeleteFunc: onSlice,
	})
	return err
}

// watchRedis records the changes of RedisServices and RedisDestinations: a new
// generation, labels or annotations (not our own status writes), or a deletion.
// Their reconcilers ask for the push.
func (s *Server) watchRedis(ctx context.Context) error {
	for _, k := range []struct {
		obj  client.Object
		kind string
	}{{&redisv1alpha1.RedisService{}, model.KindRedisService}, {&redisv1alpha1.RedisDestination{}, model.KindRedisDestination}} {
		informer, err := s.mgr.GetCache().GetInformer(ctx, k.obj)
		if err != nil {
			return fmt.Errorf("informer for %ss: %w", k.kind, err)
		}
		record := func(obj any) {
			if o := eventObject[client.Object](obj); o != nil {
				s.src.changed.redisObject(model.ObjectRef{Kind: k.kind, Namespace: o.GetNamespace(), Name: o.GetName()})
			}
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: record,
			UpdateFunc: func(o, n any) {
				before, after := eventObject[client.Object](o), eventObject[client.Object](n)
				if before == nil || after == nil || before.GetGeneration() != after.GetGeneration() ||
					!maps.Equal(before.GetLabels(), after.GetLabels()) || !maps.Equal(before.GetAnnotations(), after.GetAnnotations()) {
					record(n)
				}
			},
			DeleteFunc: record,
		}); err != nil {
			return err
		}
	}
	return nil
}

// onChange returns informer handlers that call changed with the object (the one
// before, for a deletion) when matters says that its change (nil: absent before, or
// after) can change what is generated.
func onChange[T comparable](matters func(old, cur T) bool, changed func(T)) toolscache.ResourceEventHandlerFuncs {
	var none T
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if cur := eventObject[T](obj); matters(none, cur) {
				changed(cur)
			}
		},
		UpdateFunc: func(o, n any) {
			if cur := eventObject[T](n); matters(eventObject[T](o), cur) {
				changed(cur)
			}
		},
		DeleteFunc: func(obj any) {
			if old := eventObject[T](obj); matters(old, none) {
				changed(old)
			}
		},
	}
}

// eventObject returns an informer event's object as T, out of its tombstone if it
// is one; the zero T for another type.
func eventObject[T any](obj any) T {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, _ := obj.(T)
	return o
}

// feedbackOptions are the controller's sidecar feedback settings; nil when off.
func feedbackOptions(opts Options) *push.FeedbackOptions {
	if opts.ProxyStatusInterval <= 0 {
		return nil
	}
	return &push.FeedbackOptions{
		Contain:   opts.ContainRejections,
		Protocols: plugin.FilterProtocols(),
		// Proxies answer a push within a second; three looks without a rejection
		// make filters accepted, two with one make them rejected.
		Settle:  3 * opts.ProxyStatusInterval,
		Confirm: 2,
	}
}
