package kube

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
)

// RedisOptions connect the Redis reconcilers to the EnvoyFilter controller.
type RedisOptions struct {
	// Trigger asks the EnvoyFilter controller for a push; never blocks.
	Trigger func()
	// Verdict says whether obj (*v1alpha1.RedisService or *v1alpha1.RedisDestination)
	// is in effect, as the last push found; Pending while it has no answer.
	Verdict func(obj client.Object) model.Verdict
}

// EventRecorderName is the reporting controller of the Events on Redis objects.
const EventRecorderName = "aeraki"

// SetupRedis registers the reconcilers with mgr. The returned function asks for every
// Redis object to be checked again (bootstrap calls it when a push's verdicts
// changed); it never blocks.
//
// The reconcilers run on the leader only: a replica that is not leader neither
// triggers pushes nor writes status.
func SetupRedis(mgr manager.Manager, opts RedisOptions) (recheckAll func(), err error) {
	return setupRedis(mgr, opts, mgr.GetEventRecorder(EventRecorderName))
}

// setupRedis is SetupRedis with the recorder chosen by the caller, for tests that
// count Events.
func setupRedis(mgr manager.Manager, opts RedisOptions, recorder events.EventRecorder) (func(), error) {
	if opts.Trigger == nil || opts.Verdict == nil {
		return nil, errors.New("redis reconcilers: Trigger and Verdict are required")
	}
	kinds := []*redisKind{redisServiceKind(), redisDestinationKind()}
	rechecks := make([]chan event.TypedGenericEvent[struct{}], 0, len(kinds))
	for _, k := range kinds {
		// One pending recheck is enough: it lists every object when it is handled.
		ch := make(chan event.TypedGenericEvent[struct{}], 1)
		rechecks = append(rechecks, ch)
		if err := k.setup(mgr, opts, recorder, ch); err != nil {
			return nil, err
		}
	}
	return func() {
		for _, ch := range rechecks {
			select {
			case ch <- event.TypedGenericEvent[struct{}]{}:
			default: // a recheck is already pending
			}
		}
	}, nil
}

// redisKind is what the shared reconciler needs to know about one Redis kind.
type redisKind struct {
	name      string
	newObject func() client.Object
	newList   func() client.ObjectList
	items     func(client.ObjectList) []client.Object
	status    func(client.Object) *v1alpha1.Status
}

func redisServiceKind() *redisKind {
	return &redisKind{
		name:      "redisservice",
		newObject: func() client.Object { return &v1alpha1.RedisService{} },
		newList:   func() client.ObjectList { return &v1alpha1.RedisServiceList{} },
		items: func(l client.ObjectList) []client.Object {
			list := l.(*v1alpha1.RedisServiceList)
			out := make([]client.Object, len(list.Items))
			for i := range list.Items {
				out[i] = &list.Items[i]
			}
			return out
		},
		status: func(o client.Object) *v1alpha1.Status { return &o.(*v1alpha1.RedisService).Status },
	}
}

func redisDestinationKind() *redisKind {
	return &redisKind{
		name:      "redisdestination",
		newObject: func() client.Object { return &v1alpha1.RedisDestination{} },
		newList:   func() client.ObjectList { return &v1alpha1.RedisDestinationList{} },
		items: func(l client.ObjectList) []client.Object {
			list := l.(*v1alpha1.RedisDestinationList)
			out := make([]client.Object, len(list.Items))
			for i := range list.Items {
				out[i] = &list.Items[i]
			}
			return out
		},
		status: func(o client.Object) *v1alpha1.Status { return &o.(*v1alpha1.RedisDestination).Status },
	}
}

func (k *redisKind) setup(mgr manager.Manager, opts RedisOptions, recorder events.EventRecorder,
	recheck <-chan event.TypedGenericEvent[struct{}],
) error {
	r := &redisReconciler{kind: k, client: mgr.GetClient(), opts: opts, recorder: recorder}
	err := builder.ControllerManagedBy(mgr).
		Named(k.name).
		// Status-only updates, our own writes among them, need no reconcile.
		For(k.newObject(), builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WatchesRawSource(source.Channel(recheck, handler.TypedEnqueueRequestsFromMapFunc(r.all))).
		Complete(r)
	if err != nil {
		return fmt.Errorf("%s controller: %w", k.name, err)
	}
	return nil
}

type redisReconciler struct {
	kind     *redisKind
	client   client.Client
	opts     RedisOptions
	recorder events.EventRecorder
}

// all maps a recheck to every object of this kind.
func (r *redisReconciler) all(ctx context.Context, _ struct{}) []reconcile.Request {
	list := r.kind.newList()
	if err := r.client.List(ctx, list); err != nil {
		ctrllog.FromContext(ctx).Error(err, "listing objects to recheck", "kind", r.kind.name)
		return nil
	}
	return requests(r.kind.items(list))
}

func requests(objs []client.Object) []reconcile.Request {
	out := make([]reconcile.Request, len(objs))
	for i, o := range objs {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}}
	}
	return out
}

// Reconcile triggers a push for any change, then records the object's verdict in its
// Ready condition and, when the verdict changed, in an Event.
func (r *redisReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.opts.Trigger()
	obj := r.kind.newObject()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return reconcile.Result{}, nil
	}
	v := normalize(r.opts.Verdict(obj))
	st := r.kind.status(obj)
	var prev *metav1.Condition
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
		prev = c.DeepCopy()
	}
	gen := obj.GetGeneration()
	if v.Reason == redisspec.ReasonPending && !v.Ready && prev != nil {
		// No verdict yet: a new leader waits for the mesh config, or the push that reads
		// a new generation has not run. The last verdict stands, with the generation it
		// was made for, rather than every object flapping to Pending and back on each
		// failover and each edit; the push's verdict brings the reconciler back.
		return reconcile.Result{}, nil
	}
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             metav1.ConditionFalse,
		Reason:             v.Reason,
		Message:            model.Shorten(v.Message, model.MaxConditionMessage),
		ObservedGeneration: gen,
	}
	if v.Ready {
		cond.Status = metav1.ConditionTrue
	}
	changed := meta.SetStatusCondition(&st.Conditions, cond)
	if st.ObservedGeneration != gen {
		st.ObservedGeneration = gen
		changed = true
	}
	if !changed {
		return reconcile.Result{}, nil
	}
	// Update, not patch: the resourceVersion makes a write based on a stale cache fail,
	// so a verdict is announced once; the newer object's watch event brings us back.
	if err := r.client.Status().Update(ctx, obj); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			ctrllog.FromContext(ctx).V(1).Info("status not written, object changed meanwhile", "reason", err.Error())
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("writing status: %w", err)
	}
	ctrllog.FromContext(ctx).V(1).Info("status written", "ready", v.Ready, "reason", v.Reason, "generation", gen)
	r.announce(obj, prev, &cond)
	return reconcile.Result{}, nil
}

// normalize makes a verdict a valid condition: a Reason is required.
func normalize(v model.Verdict) model.Verdict {
	if v.Reason == "" {
		v.Reason = redisspec.ReasonInvalid
		if v.Ready {
			v.Reason = redisspec.ReasonAccepted
		}
	}
	return v
}

// announce records an Event when the object stops being Ready or is not Ready for a
// new reason, and when it becomes Ready again. Pending is not announced: there is
// nothing to fix.
func (r *redisReconciler) announce(obj client.Object, prev, cur *metav1.Condition) {
	switch {
	case cur.Reason == redisspec.ReasonPending:
	case cur.Status == metav1.ConditionFalse:
		if prev != nil && prev.Status == metav1.ConditionFalse && prev.Reason == cur.Reason && prev.Message == cur.Message {
			return
		}
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, cur.Reason, "Check", "%s", model.Shorten(cur.Message, model.MaxEventNote))
	case prev != nil && prev.Status != metav1.ConditionTrue:
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, cur.Reason, "Check", "%s", model.Shorten(cur.Message, model.MaxEventNote))
	}
}
