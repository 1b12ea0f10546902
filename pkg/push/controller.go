// Package push keeps the EnvoyFilters in step with the config: every trigger leads,
// debounced, to a push (translate, plan, apply), and what the push found wrong is
// reported on the user's objects.
package push

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"

	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/plan"
	"aeraki.io/aeraki/pkg/translate"
)

// Source provides the translation input: the whole config, then what changed.
type Source interface {
	// Snapshot returns the current config; it is only called once HasSynced is true.
	// An error (a failed read, anything but an absent object) fails the push, which
	// then writes nothing and is retried. The changes recorded until then are in it:
	// Changes starts after it.
	Snapshot() (*model.Snapshot, error)
	// Changes returns what changed since the last Snapshot or Changes, each object as
	// it is now. An error fails the push, and the next one takes a Snapshot.
	Changes() (model.Delta, error)
	// HasSynced reports whether the config is complete. Pushing from an incomplete
	// config would delete the EnvoyFilters of services not seen yet.
	HasSynced() bool
}

// ControllerOptions configure a Controller.
type ControllerOptions struct {
	Context  generator.Context
	Registry generator.Registry
	Debounce DebounceOptions
	// Resync is the period of a push without any change, the safety net that repairs
	// whatever drifted unnoticed. Zero disables it.
	Resync  time.Duration
	Source  Source
	Applier *apply.Applier
	// Recorder gets a Warning Event on the user's object when its generation fails.
	Recorder events.EventRecorder
	// Metrics records pushes and generation results; nil records nothing. Give the
	// Applier the same Metrics for the writes.
	Metrics *metrics.Metrics
	// Status, when set, receives the verdicts of every translation.
	Status StatusSink
	// Routes, when set, receives the route configurations of every translation,
	// before anything is written: a sidecar that gets a filter naming routes must
	// find them.
	Routes RouteSink
	// RoutesReady, when set, holds the first push until it is true: the route server
	// can serve (it has its certificate). Writing filters that name routes no sidecar
	// can fetch would break every shared port.
	RoutesReady func() bool
	// Istiod, when set, says which istiod the EnvoyFilters are for, and whether that
	// is known yet: it holds the first push until it is (a filter written for the
	// wrong istiod may be ignored whole), and each push generates for what it returns
	// (Context.Istiod; a change regenerates every service).
	Istiod func() (model.Istiod, bool)
	// Elected is closed once this replica leads; nil means it always does. The
	// controller runs on every replica, so that each serves routes from its own
	// translation; only the leader writes, reports and publishes verdicts.
	Elected <-chan struct{}
	// Feedback, when set, turns on sidecar feedback (see ObserveProxies).
	Feedback *FeedbackOptions
	Log      logr.Logger
}

// RouteSink serves the route configurations a translation made (see
// translate.Translation.Routes) to the sidecars.
type RouteSink interface {
	SetRoutes(routes map[string]*model.RouteConfig) error
}

// StatusSink receives the verdicts a push's translation made of the objects that
// configure services (see translate.Translation.Verdicts); the Redis reconcilers
// write them into the objects' Ready conditions. Publish must not block for long.
type StatusSink interface {
	Publish(verdicts map[model.ObjectRef]model.Verdict)
}

// Controller keeps the EnvoyFilters in step with the config: every trigger leads,
// debounced, to a push (translate, plan, apply). It runs on every replica; only the
// leader writes (see ControllerOptions.Elected).
type Controller struct {
	opts       ControllerOptions
	trigger    chan struct{}
	settle     chan struct{}
	translator *translate.Translator
	planner    plan.Planner
	// full asks the next push to generate every service, not only the changed ones.
	full atomic.Bool
	// cluster records the keys of our EnvoyFilters that changed in the cluster since
	// the last plan; replan says the next plan must look at every filter (the one
	// before was skipped or its writes failed).
	cluster changedKeys
	replan  bool
	// rejected says the last verdicts published had the proxies' rejections in.
	rejected bool
	// failures and skips remember what was last reported per service, so that each
	// problem is reported once, not on every push.
	failures map[string]string
	skips    map[string]string
	// fb is nil without sidecar feedback.
	fb *feedbackState
}

// NewController returns a controller; Start runs it.
func NewController(opts ControllerOptions) *Controller {
	return &Controller{
		opts: opts, trigger: make(chan struct{}, 1), settle: make(chan struct{}, 1), translator: translate.NewTranslator(opts.Context, opts.Registry),
		failures: map[string]string{}, skips: map[string]string{},
		fb: newFeedbackState(opts.Feedback, opts.Context.RootNamespace),
	}
}

// Trigger asks for a push. It never blocks; triggers close together are merged.
func (c *Controller) Trigger() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// ClusterChanged records that our EnvoyFilter key changed in the cluster (the
// informer's event) and asks for a push: the next plan looks at it.
func (c *Controller) ClusterChanged(key string) {
	c.cluster.add(key)
	c.Trigger()
}

// ConfigChanged asks for a push once the user's config has settled
// (DebounceOptions.Settle): a change from istiod, or of the objects the controller
// reads from the apiserver beside it (ServiceEntry annotations, Services, Redis
// objects), which reach it sooner than istiod relays what was applied with them.
// It never blocks.
func (c *Controller) ConfigChanged() {
	select {
	case c.settle <- struct{}{}:
	default:
	}
}

// Resync asks for a push that generates every service afresh, whatever the cache
// holds, and repairs any drift in the cluster.
func (c *Controller) Resync() {
	c.full.Store(true)
	c.Trigger()
}

// NeedLeaderElection makes the manager run the controller on every replica: the
// push itself checks for leadership before it writes.
func (c *Controller) NeedLeaderElection() bool { return false }

// leading reports whether this replica writes.
func (c *Controller) leading() bool {
	if c.opts.Elected == nil {
		return true
	}
	select {
	case <-c.opts.Elected:
		return true
	default:
		return false
	}
}

// Start waits for the config to be complete, pushes, then pushes on every trigger
// until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	log := c.opts.Log
	log.Info("waiting for the config to sync (and the route server's certificate, when it serves routes)")
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return c.opts.Source.HasSynced() && (c.opts.RoutesReady == nil || c.opts.RoutesReady()) && c.istiodKnown(), nil
	}); err != nil {
		return nil //nolint:nilerr // ctx is done: a normal stop
	}
	log.Info("config synced, pushing")
	c.Trigger()
	if c.opts.Elected != nil {
		// Becoming the leader is a reason to push: writes were skipped until now.
		go func() {
			select {
			case <-c.opts.Elected:
				log.Info("elected leader, pushing")
				c.Trigger()
			case <-ctx.Done():
			}
		}()
	}
	if c.opts.Resync > 0 {
		go wait.Until(c.Resync, c.opts.Resync, ctx.Done())
	}
	Debounce(ctx, c.trigger, c.settle, c.opts.Debounce, func(ctx context.Context, merged int) {
		c.opts.Metrics.Merged(merged)
		err := c.Push(ctx)
		switch {
		case errors.Is(err, apply.ErrNotRetriable):
			log.Error(err, "push failed; waiting for a change", "mergedTriggers", merged)
		case err != nil:
			log.Error(err, "push failed; retrying", "mergedTriggers", merged)
			// Retry without waiting for a config change.
			time.AfterFunc(c.opts.Debounce.Max, c.Trigger)
		}
	})
	return nil
}

func (c *Controller) istiodKnown() bool {
	if c.opts.Istiod == nil {
		return true
	}
	_, known := c.opts.Istiod()
	return known
}

// Push translates what changed (the whole config on the first push, after a
// failure, and on a resync) and writes the difference.
func (c *Controller) Push(ctx context.Context) (err error) {
	start := time.Now()
	result := metrics.PushUnchanged
	defer func() {
		if err != nil {
			result = metrics.PushError
		}
		c.opts.Metrics.Pushed(result, time.Since(start))
	}()
	full := c.full.Swap(false)
	defer func() {
		if err != nil {
			// The changes the push took are gone, and its writes may be half done:
			// the retry starts from the whole config and plans every filter. A resync
			// it took is owed again; a resync asked for meanwhile stays asked for.
			if full {
				c.full.Store(true)
			}
			c.replan = true
			c.translator.Discard()
		}
	}()
	translateStart := time.Now()
	if full {
		c.translator.Reset()
		c.planner.Reset()
		c.replan = true
	}
	if c.opts.Istiod != nil {
		if i, _ := c.opts.Istiod(); c.translator.SetIstiod(i) {
			c.opts.Log.Info("generating for istiod", "istiod", i.String())
		}
	}
	t, snapshot, err := c.translate()
	if err != nil {
		return err
	}
	// A translation of the whole config says nothing of what changed since the last.
	c.replan = c.replan || snapshot
	c.opts.Metrics.Translated(t, time.Since(translateStart))
	// What leaves the push is copied: the translation changes in place next time.
	if c.opts.Routes != nil && (snapshot || t.RoutesChanged) {
		if err := c.opts.Routes.SetRoutes(maps.Clone(t.Routes)); err != nil {
			return fmt.Errorf("serving routes: %w", err)
		}
	}
	if !c.leading() {
		// The next plan, on becoming the leader, starts from what is there.
		c.replan = true
		c.opts.Log.V(1).Info("push: not the leader, nothing written", "services", t.Generated+t.Reused, "routes", len(t.Routes))
		return nil
	}
	c.report(t, c.replan)
	desired, containing := t.Filters, false
	if c.fb != nil {
		desired, containing = c.fb.filter(t, c.replan)
	}
	if c.opts.Status != nil {
		// After a snapshot, or pushes that wrote nothing (not the leader), every
		// verdict is news.
		c.publish(t, c.replan)
	}
	// While filters are contained, what is written is not the translation: plan
	// every filter (rare: proxies reject what we wrote).
	whole := c.replan || containing
	c.replan = containing
	changes, err := c.plan(ctx, t, desired, whole)
	if err != nil {
		return err
	}
	var keys map[string]bool
	if !whole {
		keys = t.Changed
	}
	if changes.Empty() {
		if c.fb != nil {
			c.fb.applied(desired, keys, nil, time.Now())
		}
		c.opts.Log.V(1).Info("push: nothing to change", "services", t.Generated+t.Reused, "generated", t.Generated, "filters", len(t.Filters), "duration", time.Since(start))
		return nil
	}
	result = metrics.PushChanged
	res, err := c.opts.Applier.Apply(ctx, changes)
	if c.fb != nil {
		if err == nil {
			c.fb.applied(desired, keys, slices.Concat(changes.Create, changes.Update, changes.Delete), time.Now())
		} else {
			c.fb.writeFailed()
		}
	}
	c.opts.Log.Info("push", "services", t.Generated+t.Reused, "generated", t.Generated, "filters", len(t.Filters), "created", res.Created,
		"updated", res.Updated, "deleted", res.Deleted, "failed", res.Failed, "duration", time.Since(start))
	return err
}

// publish gives the status sink the verdicts, when they or the proxies' say changed
// (or all is news).
func (c *Controller) publish(t *translate.Translation, all bool) {
	verdicts, rejected := t.Verdicts, false
	if c.fb != nil {
		verdicts, rejected = c.fb.verdicts(verdicts)
	}
	if all || t.VerdictsChanged || rejected || c.rejected {
		c.opts.Status.Publish(maps.Clone(verdicts))
	}
	c.rejected = rejected
}

// translate translates what changed since the last push, or the whole config
// (snapshot) when the translator has nothing to change or the change cannot be told
// object by object.
func (c *Controller) translate() (t *translate.Translation, snapshot bool, err error) {
	if !c.translator.NeedsSnapshot() {
		delta, err := c.opts.Source.Changes()
		if err != nil {
			return nil, false, fmt.Errorf("reading what changed: %w", err)
		}
		if !delta.Whole {
			t, err := c.translator.Update(delta)
			if err != nil {
				return nil, false, fmt.Errorf("translating: %w", err)
			}
			return t, false, nil
		}
	}
	snap, err := c.opts.Source.Snapshot()
	if err != nil {
		return nil, true, fmt.Errorf("reading the config: %w", err)
	}
	t, err = c.translator.Translate(snap)
	if err != nil {
		return nil, true, fmt.Errorf("translating: %w", err)
	}
	return t, true, nil
}

// plan diffs desired against the cluster: every filter when whole, else what the
// translation and the cluster changed since the last plan.
func (c *Controller) plan(ctx context.Context, t *translate.Translation, desired map[string]*model.EnvoyFilter, whole bool) (plan.Changes, error) {
	changed := c.cluster.take()
	if !whole {
		return c.planner.PlanChanges(t, desired, c.opts.Applier, changed)
	}
	current, err := c.opts.Applier.Current(ctx)
	if err != nil {
		return plan.Changes{}, err
	}
	return c.planner.Plan(desired, current, t.Failed), nil
}

// changedKeys is a set of keys that several goroutines add to.
type changedKeys struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (k *changedKeys) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = map[string]bool{}
	}
	k.keys[key] = true
}

// take returns the keys added since it was last called.
func (k *changedKeys) take() map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := k.keys
	k.keys = nil
	return keys
}

// report tells the user about each failed service once per distinct error, and about
// ports left as plain TCP once per distinct reason: of every service when all, else
// of the services the translation changed (see Translation.ChangedServices).
func (c *Controller) report(t *translate.Translation, all bool) {
	changed := func(key string) bool {
		service, _, _ := strings.Cut(key, "@") // a view's failure is its service's
		return all || t.ChangedServices[service]
	}
	for key := range c.skips {
		if _, still := t.Skipped[key]; !still && changed(key) {
			delete(c.skips, key)
		}
	}
	for key := range c.failures {
		if _, still := t.Failed[key]; !still && changed(key) {
			delete(c.failures, key)
			c.opts.Log.Info("service generates again", "service", key)
		}
	}
	if all {
		for key := range t.Skipped {
			c.reportSkipped(key, t.Skipped[key])
		}
		for key, serr := range t.Failed {
			c.reportFailed(key, serr)
		}
		return
	}
	for key := range t.ChangedServices {
		if skipped, ok := t.Skipped[key]; ok {
			c.reportSkipped(key, skipped)
		}
		if serr, ok := t.Failed[key]; ok {
			c.reportFailed(key, serr)
		}
		if svc := t.ByKey[key]; svc != nil {
			for _, v := range svc.Views {
				if serr, ok := t.Failed[translate.ViewKey(key, v.Namespace)]; ok {
					c.reportFailed(translate.ViewKey(key, v.Namespace), serr)
				}
			}
		}
	}
}

// reportSkipped tells of the ports of a service left as plain TCP, unless it told
// the same last time.
func (c *Controller) reportSkipped(key string, skipped []*translate.ServiceError) {
	var msgs []string
	for _, s := range skipped {
		msgs = append(msgs, fmt.Sprintf("port %d (%s): %v", s.Port.Number, s.Protocol, s.Err))
	}
	msg := strings.Join(msgs, "; ")
	if c.skips[key] == msg {
		return
	}
	c.skips[key] = msg
	svc := skipped[0].Service
	c.opts.Log.Info("leaving ports as plain TCP", "kind", svc.Kind(), "namespace", svc.Namespace, "name", svc.ObjectName(), "reason", msg)
	if c.opts.Recorder != nil {
		c.opts.Recorder.Eventf(objectRef(svc), nil, corev1.EventTypeNormal, "PortLeftAsTCP", "Generate", "%s", model.Shorten(msg, model.MaxEventNote))
	}
}

// reportFailed tells of a failure (key: a service's, or a view's), unless it told
// the same last time.
func (c *Controller) reportFailed(key string, serr *translate.ServiceError) {
	msg := serr.Err.Error()
	if c.failures[key] == msg {
		return
	}
	c.failures[key] = msg
	c.opts.Metrics.GenerationFailed(serr)
	svc := serr.Service
	c.opts.Log.Error(serr.Err, "cannot generate EnvoyFilters; keeping the ones applied before",
		"kind", svc.Kind(), "namespace", svc.Namespace, "name", svc.ObjectName(), "port", serr.Port.Number, "protocol", serr.Protocol)
	if c.opts.Recorder != nil {
		c.opts.Recorder.Eventf(objectRef(svc), nil, corev1.EventTypeWarning, "GenerationFailed", "Generate", "%s",
			model.Shorten(fmt.Sprintf("port %d (%s): %v", serr.Port.Number, serr.Protocol, serr.Err), model.MaxEventNote))
	}
}

func objectRef(svc *model.Service) *corev1.ObjectReference {
	ref := &corev1.ObjectReference{Kind: svc.Kind(), Namespace: svc.Namespace, Name: svc.ObjectName()}
	if ref.Kind == "ServiceEntry" {
		ref.APIVersion = "networking.istio.io/v1"
	} else {
		ref.APIVersion = "v1"
	}
	return ref
}
