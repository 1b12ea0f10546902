// Package xds watches Istio config through istiod's xDS "api" generator (MCP over
// xDS), keeps ServiceEntries, VirtualServices and DestinationRules in memory and
// reports the changes that can matter to a generator.
package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"istio.io/istio/pilot/pkg/config/memory"
	istiomodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"

	"aeraki.io/aeraki/pkg/model"
)

// Kinds of Event.
const (
	KindServiceEntry    = "ServiceEntry"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
)

// Defaults for the zero values of Options.
const (
	DefaultDomainSuffix   = "cluster.local"
	DefaultNamespace      = "istio-system"
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// Options configure a Watcher.
type Options struct {
	// Address is istiod's xDS address, host:port: the secure port
	// (istiod.istio-system.svc:15012), or 15010 with Security.Plaintext.
	Address string
	// Security says how istiod and the watcher authenticate each other.
	Security Security
	// DomainSuffix completes short VirtualService and DestinationRule hosts
	// (default cluster.local).
	DomainSuffix string
	// Namespace is the namespace the controller runs in, sent as the xDS node's
	// namespace (default istio-system). istiod treats the client as a sidecar there:
	// it lists Kubernetes Services, and decides which changes to push, by that
	// sidecar's scope. Services and config not visible from it (exportTo elsewhere,
	// or hidden by a Sidecar resource that applies there) are missed.
	Namespace string
	// InitialBackoff and MaxBackoff bound the exponential reconnect backoff, which
	// retries for ever (defaults 500ms and 30s).
	InitialBackoff, MaxBackoff time.Duration
	// Logger receives the watcher's logs (keys: kind, namespace, name, address).
	Logger logr.Logger
	// Observer, if set, is told when the stream to istiod comes up and goes down
	// (for metrics).
	Observer ConnectionObserver
}

// ConnectionObserver is told each time the xDS stream to istiod comes up (again:
// after having been up before, a reconnect) or goes down. It is called from the
// stream's goroutine and must return quickly.
type ConnectionObserver interface {
	ObserveConnection(up, again bool)
}

// ConnectionObserverFunc adapts a function to ConnectionObserver.
type ConnectionObserverFunc func(up, again bool)

// ObserveConnection calls f.
func (f ConnectionObserverFunc) ObserveConnection(up, again bool) { f(up, again) }

func (o Options) withDefaults() Options {
	if o.DomainSuffix == "" {
		o.DomainSuffix = DefaultDomainSuffix
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	return o
}

// Event says that Istio config changed in a way that can matter to a generator. It
// names the object that changed; the new state is read with Snapshot.
type Event struct {
	Kind            string // KindServiceEntry, KindVirtualService or KindDestinationRule
	Namespace, Name string
}

func (e Event) String() string { return e.Kind + " " + e.Namespace + "/" + e.Name }

// Watcher is an xDS client of istiod that mirrors ServiceEntries, VirtualServices and
// DestinationRules (Kubernetes Services included, as istiod's synthetic-<name>
// ServiceEntries).
type Watcher struct {
	opts     Options
	onChange func(Event)
	log      logr.Logger

	started   atomic.Bool
	connected atomic.Bool
	// wasUp is set the first time the stream comes up: every later up is a reconnect.
	wasUp atomic.Bool

	mu     sync.RWMutex
	client *adsc.ADSC         // set by Run
	store  *memory.Controller // set by Run

	// filterMu guards hosts and serialises onChange, so that the decision about an
	// event and its delivery see the same host index.
	filterMu sync.Mutex
	hosts    *hostIndex
}

// NewWatcher returns a Watcher that calls onChange for every change that can matter to
// a generator. onChange is called one event at a time from the store's event
// goroutines (possibly for a moment after Run returns) and must return quickly: hand
// the event to a debouncer.
func NewWatcher(opts Options, onChange func(Event)) *Watcher {
	opts = opts.withDefaults()
	if onChange == nil {
		onChange = func(Event) {}
	}
	if opts.Observer == nil {
		opts.Observer = ConnectionObserverFunc(func(bool, bool) {})
	}
	return &Watcher{
		opts:     opts,
		onChange: onChange,
		log:      opts.Logger.WithName("config"),
		hosts:    newHostIndex(),
	}
}

// watchedKind is an Istio type the watcher asks istiod for.
type watchedKind struct {
	gvk  config.GroupVersionKind
	kind string
}

func watchedKinds() []watchedKind {
	return []watchedKind{
		{gvk.ServiceEntry, KindServiceEntry},
		{gvk.VirtualService, KindVirtualService},
		{gvk.DestinationRule, KindDestinationRule},
	}
}

// Run connects to istiod and keeps the store in step with it until ctx is done. It
// retries the first connection for ever with backoff; after that adsc reconnects by
// itself, and on every reconnect istiod sends the full state per type, so deletions
// made while it was away are noticed. Run returns nil when ctx is done, an error only
// if it cannot start; it closes the xDS client before returning and may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("config watcher: Run called more than once")
	}
	if w.opts.Address == "" {
		return errors.New("config watcher: no istiod address")
	}

	requests := make([]*discovery.DiscoveryRequest, 0, len(watchedKinds()))
	for _, k := range watchedKinds() {
		requests = append(requests, &discovery.DiscoveryRequest{TypeUrl: k.gvk.String()})
	}
	client, err := adsc.New(w.opts.Address, &adsc.ADSConfig{
		Config: adsc.Config{
			ClientName:    "aeraki",
			Namespace:     w.opts.Namespace,
			Workload:      "aeraki",
			Meta:          istiomodel.NodeMetadata{Generator: "api"}.ToStruct(),
			BackoffPolicy: newADSCBackOff(w.opts.InitialBackoff, w.opts.MaxBackoff),
			GrpcOpts:      w.dialOptions(),
		},
		InitialDiscoveryRequests: requests,
	})
	if err != nil {
		return fmt.Errorf("config watcher: creating xDS client for istiod at %s: %w", w.opts.Address, err)
	}

	// Built here, not in NewWatcher, and only once nothing can fail: registering a
	// handler starts goroutines that stop only when the store's Run does.
	// MakeSkipValidation, because adsc silently drops what fails validation, and
	// istiod has validated it already.
	store := memory.NewController(memory.MakeSkipValidation(collections.Pilot))
	for _, k := range watchedKinds() {
		store.RegisterEventHandler(k.gvk, w.handler(k.kind))
	}
	store.RegisterHasSyncedHandler(client.HasSynced)
	client.Store = adscStore{store}

	w.mu.Lock()
	w.client, w.store = client, store
	w.mu.Unlock()

	stop := make(chan struct{})
	storeDone := make(chan struct{})
	go func() {
		defer close(storeDone)
		store.Run(stop)
	}()
	// adsc opens its stream with context.Background(): closing the connection is the
	// only way to abort a Run that is still dialling when ctx ends.
	stopClosing := context.AfterFunc(ctx, client.Close)
	defer func() {
		stopClosing()
		client.Close()
		close(stop)
		<-storeDone
		w.setDown()
	}()

	w.log.Info("connecting to istiod", "address", w.opts.Address)
	err = backoff.RetryNotify(func() error {
		if err := client.Run(); err != nil {
			return fmt.Errorf("opening xDS stream to istiod at %s: %w", w.opts.Address, err)
		}
		return nil
	}, backoff.WithContext(newExponentialBackOff(w.opts.InitialBackoff, w.opts.MaxBackoff), ctx),
		func(err error, next time.Duration) {
			w.log.Info("istiod not reachable, retrying", "address", w.opts.Address, "error", err.Error(), "retryIn", next)
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	<-ctx.Done()
	return nil
}

// adscStore is the store adsc writes to. It mends one quirk of adsc with the memory
// store: updating an object that has no resource version (istiod's synthetic
// ServiceEntries) leaves an empty "ResourceVersion" annotation behind, which would show
// in Snapshot and make the first rewrite of every such object look like a change.
type adscStore struct {
	*memory.Controller
}

func (s adscStore) Update(cfg config.Config) (string, error) {
	if v, ok := cfg.Annotations[memory.ResourceVersion]; ok && v == "" {
		cfg.Annotations = maps.Clone(cfg.Annotations)
		delete(cfg.Annotations, memory.ResourceVersion)
	}
	return s.Controller.Update(cfg)
}

// dialOptions are adsc's gRPC options. Passing any makes adsc leave transport
// security to us: plaintext, like istiod's port 15010.
func (w *Watcher) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's own reconnect backoff grows to 120s; keep it within ours so that
		// a restarted istiod is found as soon as adsc asks.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  w.opts.InitialBackoff,
				Multiplier: grpcbackoff.DefaultConfig.Multiplier,
				Jitter:     grpcbackoff.DefaultConfig.Jitter,
				MaxDelay:   w.opts.MaxBackoff,
			},
			MinConnectTimeout: 20 * time.Second,
		}),
		// The stream is idle between pushes; without pings a vanished istiod (node
		// loss, no FIN) would leave it hanging for ever. Same values istiod uses as
		// an xDS config client.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithStreamInterceptor(w.observeStream),
	}
}

// observeStream wraps adsc's stream so the watcher knows whether it is up and can say
// why not: adsc reports stream errors only through istio's global logger.
func (w *Watcher) observeStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption,
) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &observedStream{ClientStream: cs, w: w}, nil
}

type observedStream struct {
	grpc.ClientStream
	w *Watcher
}

func (s *observedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.w.streamResult(err)
	return err
}

func (w *Watcher) streamResult(err error) {
	if err == nil {
		if !w.connected.Swap(true) {
			w.opts.Observer.ObserveConnection(true, w.wasUp.Swap(true))
			w.log.Info("connected to istiod", "address", w.opts.Address)
		}
		return
	}
	wasUp := w.setDown()
	switch status.Code(err) {
	case codes.Canceled:
		// Our own shutdown.
	case codes.Unauthenticated, codes.PermissionDenied:
		w.log.Error(err, "istiod refused the api generator stream: run istiod with ENABLE_XDS_API_GENERATOR_AUTH=false "+
			"(Istio 1.31+) or connect over mTLS with a control-plane identity", "address", w.opts.Address)
	default:
		if wasUp {
			w.log.Info("lost connection to istiod, reconnecting", "address", w.opts.Address, "error", err.Error())
		} else {
			w.log.V(1).Info("xDS stream to istiod failed", "address", w.opts.Address, "error", err.Error())
		}
	}
}

// setDown marks the stream down and reports whether it was up.
func (w *Watcher) setDown() bool {
	wasUp := w.connected.Swap(false)
	if wasUp {
		w.opts.Observer.ObserveConnection(false, false)
	}
	return wasUp
}

// handler turns the store's events for one kind into filtered Events. The store calls
// it with (zero, new) for an add, (old, new) for an update and (zero, old) for a delete.
func (w *Watcher) handler(kind string) istiomodel.EventHandler {
	return func(old, cur config.Config, ev istiomodel.Event) {
		var c change
		switch ev {
		case istiomodel.EventAdd:
			c = change{New: &cur}
		case istiomodel.EventUpdate:
			c = change{Old: &old, New: &cur}
		case istiomodel.EventDelete:
			c = change{Old: &cur}
		default:
			return
		}
		w.process(kind, ev.String(), c)
	}
}

// process updates the host index and emits the change if it matters.
func (w *Watcher) process(kind, op string, c change) {
	obj := c.New
	if obj == nil {
		obj = c.Old
	}
	w.filterMu.Lock()
	defer w.filterMu.Unlock()
	if kind == KindServiceEntry {
		w.hosts.update(c)
	}
	log := w.log.WithValues("kind", kind, "namespace", obj.Namespace, "name", obj.Name, "event", op)
	if !relevant(c, w.hosts.contains, w.opts.DomainSuffix) {
		log.V(2).Info("config change ignored")
		return
	}
	log.V(1).Info("config change")
	w.onChange(Event{Kind: kind, Namespace: obj.Namespace, Name: obj.Name})
}

// HasSynced reports whether every watched type was received at least once. It stays
// true across reconnects: the store keeps the last state meanwhile.
func (w *Watcher) HasSynced() bool {
	w.mu.RLock()
	client := w.client
	w.mu.RUnlock()
	return client != nil && client.HasSynced()
}

// Connected reports whether the stream to istiod is up (best effort: it turns true on
// the first response and false on the first receive error).
func (w *Watcher) Connected() bool { return w.connected.Load() }

// Snapshot returns the current store contents, each list sorted by namespace and
// name. The specs are shared with the store and must not be modified. The three
// lists are read one after the other; the next Event tells of anything newer.
func (w *Watcher) Snapshot() (serviceEntries, virtualServices, destinationRules []model.Object) {
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return nil, nil, nil
	}
	list := func(k config.GroupVersionKind) []model.Object {
		cfgs := store.List(k, "")
		out := make([]model.Object, len(cfgs))
		for i, c := range cfgs {
			out[i] = model.Object{Name: c.Name, Namespace: c.Namespace, Annotations: c.Annotations, ResourceVersion: c.ResourceVersion, Spec: c.Spec}
		}
		slices.SortFunc(out, func(a, b model.Object) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		return out
	}
	return list(gvk.ServiceEntry), list(gvk.VirtualService), list(gvk.DestinationRule)
}
