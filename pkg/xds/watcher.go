// Package xds watches Istio config through istiod's xDS "api" generator (MCP over
// xDS), keeps ServiceEntries, VirtualServices and DestinationRules (and the mesh
// config's export defaults) in memory and reports the changes that can matter to a
// generator.
//
// # Whole pushes
//
// istiod sends each kind in its own response, so a store written response by
// response would show, between two of them, a VirtualService without the
// DestinationRule applied with it, and a push of ours from that view would report a
// subset as undefined and write routes nobody asked for. The watcher therefore
// holds every response until the whole of istiod's push has come, and then applies
// it to the store in one step that Snapshot cannot see half of; only then do the
// Events fire and HasSynced turn true.
//
// A push is whole when every watched type (mesh config, ServiceEntry,
// VirtualService, DestinationRule) has come since the last one applied, all with
// the same version_info. This is sound because of how istiod answers an "api"
// client (pilot/pkg/xds): pushConnection (ads.go) hands a push to pushXds
// (xdsgen.go) for every type the connection watches, and the api generator
// (pilot/pkg/networking/apigen/apigen.go) answers every type on every push,
// changed or not, with VersionInfo set to the push context's PushVersion. A
// connection handles its pushes and requests one at a time (Stream in
// pkg/xds/server.go), so the responses of one
// push are contiguous on the stream; their order among these types is not fixed
// (they are not in PushOrder), hence the check by set, not by last type. Answers to
// the first requests carry the version of the push context current then; a push
// that comes between them re-sends the types asked so far, so the newer response of
// a type replaces the older and the batch is whole once all have the newer version.
// Pushes that reuse a push context (endpoint-only or forced pushes) carry its
// version again; requiring every type since the last applied batch keeps those
// whole too.
//
// Cost: a change is applied when the last response of its push arrives instead of
// when its own does, that is the time istiod takes to list and send the other
// kinds of the same push: well under a millisecond for a few objects, a few
// milliseconds at thousands, against a push debounce of hundreds. Should a push
// never complete (an istiod that skips types, or a stream broken in the middle of
// one), what came is applied after DefaultWholePushTimeout and the log says which
// types were missing: late, and possibly mixed, but never lost.
//
// # Objects applied together
//
// A whole push is not yet a whole change: the api generator lists istiod's live
// config store, not the push context, so a push istiod started just before the
// second of two objects applied together reached it carries the first alone (a
// VirtualService without its DestinationRule). That second object is an event to
// istiod, which pushes again once its own debounce (PILOT_DEBOUNCE_AFTER, 100ms by
// default) has passed. So the watcher's Events ask the push loop to wait until
// istiod's config has been still for longer than that (push.DebounceOptions.Settle,
// one second by default): the push that follows sees both. The objects the
// controller reads from the apiserver itself (ServiceEntry annotations, Services,
// Redis objects) come the other way, sooner than istiod relays what was applied
// with them, and their changes take the same settle. What this assumes, and
// where it ends: istiod's next push reaches the watcher within the settle (an
// istiod so loaded that its pushes lag by more needs a longer --settle), and config
// that never pauses for the settle is still pushed at the debounce ceiling, which
// may fall inside an apply.
package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/config/memory"
	istiomodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"

	"aeraki.io/aeraki/pkg/model"
)

// Kinds of Event.
const (
	KindServiceEntry    = "ServiceEntry"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
	KindWorkloadEntry   = "WorkloadEntry"
	// KindMeshConfig is a change of the mesh config's export defaults (see
	// Watcher.ExportDefaults); the Event names no object.
	KindMeshConfig = "MeshConfig"
)

// Defaults for the zero values of Options.
const (
	DefaultDomainSuffix   = "cluster.local"
	DefaultNamespace      = "istio-system"
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	// DefaultWholePushTimeout is how long the responses of an incomplete push wait
	// for the rest before they are applied anyway (see the package doc).
	DefaultWholePushTimeout = 5 * time.Second
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
	// Namespace is istiod's root namespace (default istio-system), the only one it
	// serves the api generator to. The xDS node declares the namespace of the
	// token's identity (Namespace itself with Security.Plaintext), which must be this
	// one. istiod treats the client as a sidecar there: it lists Kubernetes Services,
	// and decides which changes to push, by that sidecar's scope. Kubernetes
	// Services not visible from it (exportTo elsewhere, or hidden by a Sidecar
	// resource that applies there) are missed; the controller adds those not
	// exported there from its own cache (see SetHiddenServices). ServiceEntries,
	// VirtualServices and DestinationRules come whatever their exportTo.
	Namespace string
	// InitialBackoff and MaxBackoff bound the exponential reconnect backoff, which
	// retries for ever (defaults 500ms and 30s).
	InitialBackoff, MaxBackoff time.Duration
	// Logger receives the watcher's logs (keys: kind, namespace, name, address).
	Logger logr.Logger
	// Observer, if set, is told when the stream to istiod comes up and goes down,
	// and why an attempt failed (for metrics).
	Observer ConnectionObserver

	// wholePushTimeout bounds how long responses wait for the rest of their push
	// (default DefaultWholePushTimeout; tests shorten it).
	wholePushTimeout time.Duration
}

// ConnectionObserver is told each time the xDS stream to istiod comes up (again:
// after having been up before, a reconnect) or goes down, and why each failed
// attempt to connect failed (one of the Reason constants). It is called from the
// stream's goroutine and must return quickly.
type ConnectionObserver interface {
	ObserveConnection(up, again bool)
	ObserveConnectionFailure(reason string)
}

// ConnectionObserverFuncs adapts functions to ConnectionObserver; a nil one is not
// called.
type ConnectionObserverFuncs struct {
	Connection func(up, again bool)
	Failure    func(reason string)
}

// ObserveConnection calls f.Connection.
func (f ConnectionObserverFuncs) ObserveConnection(up, again bool) {
	if f.Connection != nil {
		f.Connection(up, again)
	}
}

// ObserveConnectionFailure calls f.Failure.
func (f ConnectionObserverFuncs) ObserveConnectionFailure(reason string) {
	if f.Failure != nil {
		f.Failure(reason)
	}
}

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
	if o.wholePushTimeout <= 0 {
		o.wholePushTimeout = DefaultWholePushTimeout
	}
	o.Security = o.Security.withDefaults(o.Address)
	return o
}

// Event says that Istio config changed in a way that can matter to a generator. It
// names the object that changed; the new state is read with Snapshot.
type Event struct {
	Kind            string // KindServiceEntry, KindVirtualService, KindDestinationRule or KindMeshConfig
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

	// local is the latest failure the TLS handshake or the token credentials found,
	// for the classification of the attempts it breaks.
	local atomic.Pointer[localError]
	// failure is why the watcher is not connected, if it knows.
	failure failureState

	mu     sync.RWMutex
	client *adsc.ADSC         // set by Run
	store  *memory.Controller // set by Run
	id     identity           // the declared identity, set by Run

	// filterMu guards hosts and exportDefaults and serialises onChange, so that the
	// decision about an event and its delivery see the same state.
	filterMu       sync.Mutex
	hosts          *hostIndex
	exportDefaults model.ExportDefaults
	// hidden indexes the hosts of the services istiod does not show the watcher
	// (see SetHiddenServices).
	hidden *hostIndex

	// batchMu guards the responses of the push being received and their application
	// to the store.
	batchMu sync.Mutex
	batch   *pushBatch
	// batchStart is when the first response of the pending batch came.
	batchStart time.Time
	// batchTimer applies an incomplete batch after Options.wholePushTimeout.
	batchTimer *time.Timer
	// batchDone is set when Run returns: nothing is applied after.
	batchDone bool
	// applied holds the types applied at least once; synced is set once all are.
	applied map[string]bool
	synced  atomic.Bool
	// storeMu makes the application of a batch atomic for Snapshot and Changes;
	// changes are what the batches applied since either.
	storeMu sync.RWMutex
	changes changeLog
}

// changeLog records the objects each applied push changed, for Changes.
type changeLog struct {
	mu    sync.Mutex
	keys  map[changeKey]bool
	whole bool
}

type changeKey struct {
	kind            model.ObjectKind
	namespace, name string
}

func (l *changeLog) add(kind model.ObjectKind, namespace, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[changeKey]bool{}
	}
	l.keys[changeKey{kind, namespace, name}] = true
}

func (l *changeLog) setWhole() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.whole = true
}

func (l *changeLog) take() (map[changeKey]bool, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys, whole := l.keys, l.whole
	l.keys, l.whole = nil, false
	return keys, whole
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
		opts.Observer = ConnectionObserverFuncs{}
	}
	return &Watcher{
		opts:     opts,
		onChange: onChange,
		log:      opts.Logger.WithName("config"),
		hosts:    newHostIndex(),
		hidden:   newHostIndex(),
		batch:    newPushBatch(watchedTypeURLs()),
		applied:  map[string]bool{},
	}
}

// watchedKind is an Istio type the watcher asks istiod for.
type watchedKind struct {
	gvk    config.GroupVersionKind
	kind   string
	object model.ObjectKind
}

func watchedKinds() []watchedKind {
	return []watchedKind{
		{gvk.ServiceEntry, KindServiceEntry, model.ServiceEntryKind},
		{gvk.VirtualService, KindVirtualService, model.VirtualServiceKind},
		{gvk.DestinationRule, KindDestinationRule, model.DestinationRuleKind},
		{gvk.WorkloadEntry, KindWorkloadEntry, model.WorkloadEntryKind},
	}
}

// watchedTypeURLs are the type URLs the watcher asks istiod for, in the order it
// asks: the mesh config first, so that the export defaults are in before the config
// they apply to.
func watchedTypeURLs() []string {
	urls := []string{gvk.MeshConfig.String()}
	for _, k := range watchedKinds() {
		urls = append(urls, k.gvk.String())
	}
	return urls
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

	id, err := w.waitIdentity(ctx)
	if err != nil {
		return nil // ctx is done
	}
	w.mu.Lock()
	w.id = id
	w.mu.Unlock()
	client, err := adsc.New(w.opts.Address, w.adscConfig(id))
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
	store.RegisterHasSyncedHandler(w.synced.Load)
	// No client.Store: adsc would write each response into it as it comes, and a
	// push would see half of one of istiod's. The watcher applies whole pushes
	// itself (HandleResponse).

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
		w.stopBatches()
		close(stop)
		<-storeDone
		w.setDown()
	}()

	// The stream interceptor reports every failed attempt; here only the retries.
	err = backoff.RetryNotify(func() error {
		if err := client.Run(); err != nil {
			return fmt.Errorf("opening xDS stream to istiod at %s: %w", w.opts.Address, err)
		}
		return nil
	}, backoff.WithContext(newExponentialBackOff(w.opts.InitialBackoff, w.opts.MaxBackoff), ctx),
		func(err error, next time.Duration) {
			w.log.V(1).Info("retrying the first connection to istiod", "address", w.opts.Address, "error", err.Error(), "retryIn", next)
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("config watcher: %w", err)
	}
	<-ctx.Done()
	return nil
}

// waitIdentity returns the identity the xDS node declares: with TLS the one the
// token carries, read again with backoff until it can be (a token is what istiod
// checks the node against, so there is no connecting without one); in plaintext
// none, in Options.Namespace. It fails only when ctx is done.
func (w *Watcher) waitIdentity(ctx context.Context) (identity, error) {
	sec := w.opts.Security
	if sec.Plaintext {
		w.log.Info("connecting to istiod in plaintext, without identity: only an istiod with "+
			"ENABLE_XDS_API_GENERATOR_AUTH=false (or older than Istio 1.31) answers; for local development only",
			"address", w.opts.Address, "namespace", w.opts.Namespace)
		return identity{Namespace: w.opts.Namespace}, nil
	}
	var id identity
	err := backoff.Retry(func() error {
		var err error
		if id, err = readIdentity(sec.TokenFile); err != nil {
			w.attemptFailed(&localError{reason: ReasonToken, err: err}, false)
		}
		return err
	}, backoff.WithContext(newExponentialBackOff(w.opts.InitialBackoff, w.opts.MaxBackoff), ctx))
	if err != nil {
		return identity{}, err
	}
	w.log.Info("connecting to istiod", "address", w.opts.Address, "serverName", sec.ServerName,
		"rootCert", sec.RootCertFile, "token", sec.TokenFile, "namespace", id.Namespace, "serviceAccount", id.ServiceAccount)
	if id.Namespace != w.opts.Namespace {
		// istiod will refuse it (permission_denied); say why before it does.
		w.log.Error(fmt.Errorf("aeraki runs in namespace %s but istiod serves its config only to its root namespace %s: "+
			"install aeraki into %s", id.Namespace, w.opts.Namespace, w.opts.Namespace),
			"wrong namespace for istiod", "namespace", id.Namespace, "rootNamespace", w.opts.Namespace)
	}
	return id, nil
}

// adscConfig configures the xDS client as a node of identity id: istiod checks a
// verified identity against the node's namespace and service account.
func (w *Watcher) adscConfig(id identity) *adsc.ADSConfig {
	var requests []*discovery.DiscoveryRequest
	for _, u := range watchedTypeURLs() {
		requests = append(requests, &discovery.DiscoveryRequest{TypeUrl: u})
	}
	meta := istiomodel.NodeMetadata{Generator: "api", Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}
	return &adsc.ADSConfig{
		Config: adsc.Config{
			ClientName:    "aeraki",
			Namespace:     id.Namespace,
			Workload:      "aeraki",
			Meta:          meta.ToStruct(),
			BackoffPolicy: newADSCBackOff(w.opts.InitialBackoff, w.opts.MaxBackoff),
			GrpcOpts:      w.dialOptions(),
		},
		InitialDiscoveryRequests: requests,
		ResponseHandler:          responseHandler{w},
	}
}

// dialOptions are adsc's gRPC options. Passing any makes adsc leave transport
// security to us.
func (w *Watcher) dialOptions() []grpc.DialOption {
	return append(w.credentials(),
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
	)
}

// credentials are the Security's, with the failures found on our side recorded for
// the classification of the attempts they break.
func (w *Watcher) credentials() []grpc.DialOption {
	return w.opts.Security.credentials(w.noteLocal)
}

// noteLocal records a failure found on our side for the attempts it breaks, and
// returns it.
func (w *Watcher) noteLocal(reason string, err error) error {
	le := &localError{reason: reason, err: err}
	w.local.Store(le)
	return le
}

// observeStream wraps adsc's stream so the watcher knows whether it is up and can say
// why not: adsc reports stream errors only through istio's global logger.
func (w *Watcher) observeStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption,
) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		w.streamResult(err)
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

// streamResult follows the stream: up on a response, down on an error, which it
// classifies and reports.
func (w *Watcher) streamResult(err error) {
	if err == nil {
		if !w.connected.Swap(true) {
			w.failure.clear()
			w.opts.Observer.ObserveConnection(true, w.wasUp.Swap(true))
			w.log.Info("connected to istiod", "address", w.opts.Address)
		}
		return
	}
	wasUp := w.setDown()
	if status.Code(err) == codes.Canceled {
		return // our own shutdown
	}
	w.attemptFailed(err, wasUp)
}

// attemptFailed reports a failed attempt to connect (or the loss of the stream, if
// wasUp): counted every time, logged when its reason is not the one logged last,
// with its cause and fix.
func (w *Watcher) attemptFailed(err error, wasUp bool) {
	w.mu.RLock()
	id := w.id
	w.mu.RUnlock()
	reason, cause := classify(err, w.local.Load())
	e := w.opts.explain(reason, cause, id)
	w.opts.Observer.ObserveConnectionFailure(reason)
	changed := w.failure.set(reason, e.message())
	log := w.log.WithValues("address", w.opts.Address, "reason", reason)
	switch {
	case wasUp && reason == ReasonUnreachable:
		// istiod restarting, or the network: the retries tell whether it lasts.
		log.Info("lost connection to istiod, reconnecting", "error", err.Error())
	case !changed:
		log.V(1).Info("connecting to istiod failed again", "error", err.Error())
	case reason == ReasonUnreachable:
		// Expected while istiod starts; nothing to fix unless it lasts.
		log.Info("cannot connect to istiod", "problem", e.problem, "error", cause.Error(), "fix", e.fix)
	default:
		log.Error(cause, "cannot connect to istiod", "problem", e.problem, "fix", e.fix)
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
	known := func(h host.Name) bool { return w.hosts.contains(h) || w.hidden.contains(h) }
	if !relevant(c, known, w.opts.DomainSuffix) {
		log.V(2).Info("config change ignored")
		return
	}
	log.V(1).Info("config change")
	w.onChange(Event{Kind: kind, Namespace: obj.Namespace, Name: obj.Name})
}

// setExportDefaults records the mesh's export defaults and tells of a change.
func (w *Watcher) setExportDefaults(d model.ExportDefaults) {
	w.filterMu.Lock()
	defer w.filterMu.Unlock()
	if slices.Equal(d.ServiceEntry, w.exportDefaults.ServiceEntry) && slices.Equal(d.VirtualService, w.exportDefaults.VirtualService) &&
		slices.Equal(d.DestinationRule, w.exportDefaults.DestinationRule) {
		return
	}
	w.exportDefaults = d
	w.changes.setWhole()
	w.log.Info("mesh export defaults", "serviceEntry", d.ServiceEntry, "virtualService", d.VirtualService, "destinationRule", d.DestinationRule)
	w.onChange(Event{Kind: KindMeshConfig})
}

// SetHiddenServices sets the ServiceEntries of the services that istiod does not
// show the watcher but the controller knows from elsewhere (Kubernetes Services not
// exported to its namespace): changes to their VirtualServices and
// DestinationRules are reported as those of the services istiod shows.
func (w *Watcher) SetHiddenServices(serviceEntries []model.Object) {
	idx := newHostIndex()
	for _, o := range serviceEntries {
		idx.add(&config.Config{Spec: o.Spec}, +1)
	}
	w.filterMu.Lock()
	defer w.filterMu.Unlock()
	w.hidden = idx
}

// ExportDefaults returns the export defaults of istiod's mesh config: what objects
// without exportTo get.
func (w *Watcher) ExportDefaults() model.ExportDefaults {
	w.filterMu.Lock()
	defer w.filterMu.Unlock()
	return w.exportDefaults
}

// HasSynced reports whether every watched type was received, in a whole push, at
// least once. It stays true across reconnects: the store keeps the last state
// meanwhile.
func (w *Watcher) HasSynced() bool {
	return w.synced.Load()
}

// LastError returns why the watcher is not connected to istiod: one of the Reason
// constants and a message naming the cause and the fix. Both are empty while
// connected, and before the first attempt has ended.
func (w *Watcher) LastError() (reason, message string) {
	return w.failure.get()
}

// Connected reports whether the stream to istiod is up (best effort: it turns true on
// the first response and false on the first receive error).
func (w *Watcher) Connected() bool { return w.connected.Load() }

// Snapshot returns the current store contents, each list sorted by namespace and
// name: all three from the same push of istiod's, never half of one. The specs are
// shared with the store and must not be modified. Changes starts after it.
func (w *Watcher) Snapshot() (serviceEntries, virtualServices, destinationRules []model.Object) {
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return nil, nil, nil
	}
	w.storeMu.RLock()
	defer w.storeMu.RUnlock()
	w.changes.take()
	list := func(k config.GroupVersionKind) []model.Object {
		cfgs := store.List(k, "")
		out := make([]model.Object, len(cfgs))
		for i := range cfgs {
			out[i] = object(&cfgs[i])
		}
		slices.SortFunc(out, func(a, b model.Object) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		return out
	}
	return list(gvk.ServiceEntry), list(gvk.VirtualService), list(gvk.DestinationRule)
}

// Changes returns the objects istiod's pushes changed since the last Snapshot or
// Changes, as they are now (a deleted one named only), from whole pushes as
// Snapshot's lists are; whole says the mesh's export defaults changed, which only
// a whole Snapshot can take in.
func (w *Watcher) Changes() (changes []model.Change, whole bool) {
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return nil, false
	}
	w.storeMu.RLock()
	defer w.storeMu.RUnlock()
	keys, whole := w.changes.take()
	if whole {
		return nil, true
	}
	for _, k := range watchedKinds() {
		for key := range keys {
			if key.kind != k.object {
				continue
			}
			c := model.Change{Kind: key.kind, Object: model.Object{Name: key.name, Namespace: key.namespace}, Deleted: true}
			if cfg := store.Get(k.gvk, key.name, key.namespace); cfg != nil {
				c.Object, c.Deleted = object(cfg), false
			}
			changes = append(changes, c)
		}
	}
	return changes, false
}

// Get returns a ServiceEntry of the store; nil when it has none.
func (w *Watcher) Get(namespace, name string) *model.Object {
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return nil
	}
	w.storeMu.RLock()
	defer w.storeMu.RUnlock()
	cfg := store.Get(gvk.ServiceEntry, name, namespace)
	if cfg == nil {
		return nil
	}
	o := object(cfg)
	return &o
}

func object(c *config.Config) model.Object {
	return model.Object{Name: c.Name, Namespace: c.Namespace, Annotations: c.Annotations, ResourceVersion: c.ResourceVersion,
		Created: c.CreationTimestamp, Spec: c.Spec}
}

// WorkloadEntries returns the WorkloadEntries that move a port to another number
// (a ports map), sorted by namespace and name: the only ones a generator reads.
func (w *Watcher) WorkloadEntries() []model.Object {
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return nil
	}
	var out []model.Object
	for _, c := range store.List(gvk.WorkloadEntry, "") {
		if we, ok := c.Spec.(*networking.WorkloadEntry); ok && len(we.GetPorts()) > 0 {
			out = append(out, object(&c))
		}
	}
	slices.SortFunc(out, func(a, b model.Object) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}
