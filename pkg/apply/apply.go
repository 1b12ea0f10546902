// Package apply writes EnvoyFilters to the apiserver: the only code that does, and
// only on the leader. It reads what is there from the informer cache.
package apply

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

	"github.com/cenkalti/backoff/v4"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/plan"
)

// FieldOwner is our field manager name.
const FieldOwner = "aeraki"

// Applier reads our EnvoyFilters from a cache and writes changes to the apiserver.
// It is the only code that writes EnvoyFilters.
type Applier struct {
	// Cache reads EnvoyFilters; it must be an informer cache, not a live client.
	Cache client.Reader
	// Client writes.
	Client client.Client
	// Live reads from the apiserver, for the rare case the cache has not seen an object yet.
	Live client.Reader
	// MaxElapsed bounds the retries of one write within a push; a write that still
	// fails is left to the next push.
	MaxElapsed time.Duration
	// CacheWait bounds how long Apply waits for the cache to show its writes before it
	// returns (zero: it does not wait). See awaitCache.
	CacheWait time.Duration
	// Workers is how many writes run at once (at least one). The apiserver takes
	// parallel writes much faster than one after another: a first push of a large
	// mesh writes thousands of EnvoyFilters.
	Workers int
	// Metrics counts the writes and their failures; nil counts nothing.
	Metrics *metrics.Metrics
	Log     logr.Logger
}

// Current returns the EnvoyFilters that carry our label, by key. They are the
// cache's own objects, not copies (a copy of every EnvoyFilter on every push would
// cost more than the rest of a push of one change): read them, never change them.
func (a *Applier) Current(ctx context.Context) (map[string]*model.EnvoyFilter, error) {
	list := &clientnetworking.EnvoyFilterList{}
	if err := a.Cache.List(ctx, list, client.MatchingLabels(model.ManagedLabels()),
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing EnvoyFilters from the cache: %w", err)
	}
	out := make(map[string]*model.EnvoyFilter, len(list.Items))
	for _, obj := range list.Items {
		ef := fromObject(obj)
		out[ef.Key()] = ef
	}
	return out, nil
}

// OwnerIndex indexes our EnvoyFilters in the cache by the service they were
// generated for (model.ServiceAnnotation): Owned lists a service's without a scan.
const OwnerIndex = "aeraki.owner"

// IndexOwner is OwnerIndex's function.
func IndexOwner(obj client.Object) []string {
	if owner := obj.GetAnnotations()[model.ServiceAnnotation]; owner != "" {
		return []string{owner}
	}
	return nil
}

// WatchCluster readies an informer cache for an Applier, before the cache starts:
// it indexes EnvoyFilters by owner (for Owned), and calls changed with the key of
// every one that the cache sees change (for a plan of what changed).
func WatchCluster(ctx context.Context, c cache.Cache, changed func(key string)) error {
	if err := c.IndexField(ctx, &clientnetworking.EnvoyFilter{}, OwnerIndex, IndexOwner); err != nil {
		return fmt.Errorf("indexing EnvoyFilters: %w", err)
	}
	informer, err := c.GetInformer(ctx, &clientnetworking.EnvoyFilter{})
	if err != nil {
		return fmt.Errorf("informer for EnvoyFilters: %w", err)
	}
	tell := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if ef, ok := obj.(*clientnetworking.EnvoyFilter); ok {
			changed(ef.Namespace + "/" + ef.Name)
		}
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    tell,
		UpdateFunc: func(_, obj any) { tell(obj) },
		DeleteFunc: tell,
	})
	return err
}

// Get returns our EnvoyFilter of key (namespace/name) from the cache; nil when there
// is none. It implements plan.Cluster.
func (a *Applier) Get(key string) (*model.EnvoyFilter, error) {
	ns, name, _ := strings.Cut(key, "/")
	obj := &clientnetworking.EnvoyFilter{}
	err := a.Cache.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading EnvoyFilter %s from the cache: %w", key, err)
	case !model.Managed(obj.Labels):
		return nil, nil
	}
	return fromObject(obj), nil
}

// Owned returns our EnvoyFilters of a service from the cache (their own objects:
// read them, never change them). It implements plan.Cluster.
func (a *Applier) Owned(service string) ([]*model.EnvoyFilter, error) {
	list := &clientnetworking.EnvoyFilterList{}
	if err := a.Cache.List(context.Background(), list, client.MatchingLabels(model.ManagedLabels()),
		client.MatchingFields{OwnerIndex: service}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the EnvoyFilters of %s from the cache: %w", service, err)
	}
	out := make([]*model.EnvoyFilter, 0, len(list.Items))
	for _, obj := range list.Items {
		out = append(out, fromObject(obj))
	}
	return out, nil
}

// Result counts the writes of an Apply that succeeded and failed.
type Result struct {
	Created, Updated, Deleted, Failed int
}

// Apply makes the changes, each with retries, Workers of them at a time. An update
// replaces the whole spec (a field someone else set is taken back, which a
// server-side apply would leave alone) and keeps labels and annotations others added.
// A create never takes over an EnvoyFilter of the same name that is not ours; that is
// reported. It goes on after a failed write and returns all errors, in key order.
func (a *Applier) Apply(ctx context.Context, c plan.Changes) (Result, error) {
	type job struct {
		verb  string
		ef    *model.EnvoyFilter
		write func(context.Context, *model.EnvoyFilter) (string, error)
	}
	var jobs []job
	for _, ef := range c.Create {
		jobs = append(jobs, job{metrics.OpCreate, ef, a.create})
	}
	for _, ef := range c.Update {
		jobs = append(jobs, job{metrics.OpUpdate, ef, a.update})
	}
	for _, ef := range c.Delete {
		jobs = append(jobs, job{metrics.OpDelete, ef, a.delete})
	}
	errs := make([]error, len(jobs))
	// written are the resource versions the writes left ("" for a delete).
	written := make([]string, len(jobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(a.Workers, 1), len(jobs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				err := backoff.Retry(func() error {
					rv, err := j.write(ctx, j.ef)
					if err != nil && !retriable(err) {
						return backoff.Permanent(err)
					}
					written[i] = rv
					return err
				}, backoff.WithContext(a.backoff(), ctx))
				a.Metrics.Wrote(j.verb, err)
				if err != nil {
					errs[i] = fmt.Errorf("%s EnvoyFilter %s: %w", j.verb, j.ef.Key(), err)
					continue
				}
				a.Log.V(1).Info("wrote EnvoyFilter", "verb", j.verb, "name", j.ef.Name, "namespace", j.ef.Namespace)
			}
		})
	}
	wg.Wait()
	var done []cacheExpectation
	for i, j := range jobs {
		if errs[i] == nil {
			done = append(done, cacheExpectation{key: client.ObjectKey{Namespace: j.ef.Namespace, Name: j.ef.Name}, resourceVersion: written[i]})
		}
	}
	a.awaitCache(ctx, done)
	var res Result
	retry := false
	for i, j := range jobs {
		switch {
		case errs[i] != nil:
			res.Failed++
			retry = retry || (retriable(errs[i]) && !errors.Is(errs[i], errNotOurs))
		case j.verb == metrics.OpCreate:
			res.Created++
		case j.verb == metrics.OpUpdate:
			res.Updated++
		default:
			res.Deleted++
		}
	}
	if err := errors.Join(errs...); err != nil && !retry {
		return res, fmt.Errorf("%w: %w", ErrNotRetriable, err)
	}
	return res, errors.Join(errs...)
}

// ErrNotRetriable marks an Apply whose failed writes cannot succeed by trying again
// (a name taken by an EnvoyFilter that is not ours, an object the apiserver
// rejects, a namespace that does not exist): the controller waits for the next change or resync instead of retrying.
var ErrNotRetriable = errors.New("writes failed that a retry cannot fix")

func (a *Applier) backoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxElapsedTime = a.MaxElapsed
	return b
}

// errNotOurs is a name taken by an EnvoyFilter without our labels.
var errNotOurs = errors.New("an EnvoyFilter of that name exists without our labels: rename or delete it")

// errNoNamespace is a create into a namespace that does not exist (an exportTo may
// name any): trying again cannot help until it exists, which the next resync finds.
var errNoNamespace = errors.New("the namespace does not exist")

func (a *Applier) create(ctx context.Context, ef *model.EnvoyFilter) (string, error) {
	obj := toObject(ef)
	err := a.Client.Create(ctx, obj, client.FieldOwner(FieldOwner))
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%w: %w", errNoNamespace, err)
	}
	if !apierrors.IsAlreadyExists(err) {
		return obj.ResourceVersion, err
	}
	// Ours, created by an earlier push the cache has not seen yet, or not ours (update
	// tells).
	return a.update(ctx, ef)
}

// update reads the object live, so the resourceVersion is current and a conflict
// means a real concurrent write (retried). An object that is already as desired (the
// cache was behind) is not written again.
func (a *Applier) update(ctx context.Context, ef *model.EnvoyFilter) (string, error) {
	obj := &clientnetworking.EnvoyFilter{}
	if err := a.Live.Get(ctx, client.ObjectKey{Namespace: ef.Namespace, Name: ef.Name}, obj); err != nil {
		return "", err
	}
	if !model.Managed(obj.Labels) {
		return "", backoff.Permanent(errNotOurs)
	}
	if ef.UpToDate(fromObject(obj)) {
		return obj.ResourceVersion, nil
	}
	obj.Labels = merge(obj.Labels, ef.Labels)
	obj.Annotations = merge(obj.Annotations, ef.Annotations)
	proto.Reset(&obj.Spec)
	proto.Merge(&obj.Spec, ef.SpecProto())
	err := a.Client.Update(ctx, obj, client.FieldOwner(FieldOwner))
	return obj.ResourceVersion, err
}

func merge(into, from map[string]string) map[string]string {
	if into == nil {
		into = make(map[string]string, len(from))
	}
	maps.Copy(into, from)
	return into
}

func (a *Applier) delete(ctx context.Context, ef *model.EnvoyFilter) (string, error) {
	// Only the object the plan saw: one replaced or edited since is planned again.
	var pre client.Preconditions
	if ef.UID != "" {
		uid := types.UID(ef.UID)
		pre.UID = &uid
	}
	if ef.ResourceVersion != "" {
		pre.ResourceVersion = &ef.ResourceVersion
	}
	err := a.Client.Delete(ctx, toObject(ef), pre)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	return "", err
}

// cacheExpectation is a write the cache should show: the object at that resource
// version, or gone ("").
type cacheExpectation struct {
	key             client.ObjectKey
	resourceVersion string
}

// awaitCache waits, at most CacheWait, until the cache shows the writes. The next
// push plans from the cache: one that starts before the cache has seen a create
// would create the object again (a refused POST and an update), and one that has not
// seen a delete would delete again.
func (a *Applier) awaitCache(ctx context.Context, pending []cacheExpectation) {
	if a.CacheWait <= 0 || len(pending) == 0 {
		return
	}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, a.CacheWait, true, func(ctx context.Context) (bool, error) {
		pending = slices.DeleteFunc(pending, func(e cacheExpectation) bool {
			obj := &clientnetworking.EnvoyFilter{}
			err := a.Cache.Get(ctx, e.key, obj)
			if e.resourceVersion == "" {
				return apierrors.IsNotFound(err)
			}
			return err == nil && obj.ResourceVersion == e.resourceVersion
		})
		return len(pending) == 0, nil
	})
	if err != nil {
		a.Log.V(1).Info("the cache has not seen every write yet", "pending", len(pending), "waited", a.CacheWait)
	}
}

// retriable tells passing failures from ones that a retry cannot fix (an object the
// apiserver rejects).
func retriable(err error) bool {
	return !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) && !apierrors.IsForbidden(err) &&
		!apierrors.IsMethodNotSupported(err) && !apierrors.IsNotAcceptable(err) && !apierrors.IsUnsupportedMediaType(err) &&
		!apierrors.IsRequestEntityTooLargeError(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, errNoNamespace)
}

// toObject returns the Kubernetes object of an EnvoyFilter.
func toObject(e *model.EnvoyFilter) *clientnetworking.EnvoyFilter {
	obj := &clientnetworking.EnvoyFilter{
		TypeMeta: metav1.TypeMeta{APIVersion: clientnetworking.SchemeGroupVersion.String(), Kind: "EnvoyFilter"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        e.Name,
			Namespace:   e.Namespace,
			Labels:      maps.Clone(e.Labels),
			Annotations: maps.Clone(e.Annotations),
		},
	}
	proto.Merge(&obj.Spec, e.SpecProto())
	return obj
}

// fromObject reads a Kubernetes EnvoyFilter without copying: the result
// shares obj's maps and spec, so neither may be changed while both are in use (the
// controller reads the informer cache's own objects this way, and only compares them).
// A copy the cache keeps without its spec (see model.SpecDigestAnnotation) has its
// digest.
func fromObject(obj *clientnetworking.EnvoyFilter) *model.EnvoyFilter {
	ef := &model.EnvoyFilter{
		Name:            obj.Name,
		Namespace:       obj.Namespace,
		Labels:          obj.Labels,
		Annotations:     obj.Annotations,
		Spec:            &obj.Spec,
		ResourceVersion: obj.ResourceVersion,
		UID:             string(obj.UID),
	}
	if digest := obj.Annotations[model.SpecDigestAnnotation]; digest != "" {
		ef.Spec, ef.SpecDigest = nil, digest
	}
	return ef
}
