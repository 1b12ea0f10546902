package envoyfilter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-logr/logr"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"aeraki.io/aeraki/pkg/model"
)

// FieldOwner is our field manager name in server-side apply.
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
	Log        logr.Logger
}

// Current returns the EnvoyFilters that carry our label, by key.
func (a *Applier) Current(ctx context.Context) (map[string]*model.EnvoyFilter, error) {
	list := &clientnetworking.EnvoyFilterList{}
	if err := a.Cache.List(ctx, list, client.MatchingLabels{model.ManagedByLabel: model.ManagedByValue}); err != nil {
		return nil, fmt.Errorf("listing EnvoyFilters from the cache: %w", err)
	}
	out := make(map[string]*model.EnvoyFilter, len(list.Items))
	for _, obj := range list.Items {
		ef := model.EnvoyFilterFromObject(obj)
		out[ef.Key()] = ef
	}
	return out, nil
}

// ApplyResult counts the writes that succeeded and failed.
type ApplyResult struct {
	Created, Updated, Deleted, Failed int
}

// Apply makes the changes, each with retries. Updates are server-side applies that
// force our ownership: we own these objects, so a field someone else changed is taken
// back. Creates are plain creates, so an EnvoyFilter of the same name that is not ours
// is reported, never taken over. It goes on after a failed write and returns all errors.
func (a *Applier) Apply(ctx context.Context, c Changes) (ApplyResult, error) {
	var res ApplyResult
	var errs []error
	do := func(verb string, ef *model.EnvoyFilter, write func(context.Context, *model.EnvoyFilter) error, count *int) {
		err := backoff.Retry(func() error {
			err := write(ctx, ef)
			if err != nil && !retriable(err) {
				return backoff.Permanent(err)
			}
			return err
		}, backoff.WithContext(a.backoff(), ctx))
		if err != nil {
			res.Failed++
			errs = append(errs, fmt.Errorf("%s EnvoyFilter %s: %w", verb, ef.Key(), err))
			return
		}
		*count++
		a.Log.V(1).Info("wrote EnvoyFilter", "verb", verb, "name", ef.Name, "namespace", ef.Namespace)
	}
	for _, ef := range c.Create {
		do("create", ef, a.create, &res.Created)
	}
	for _, ef := range c.Update {
		do("update", ef, a.apply, &res.Updated)
	}
	for _, ef := range c.Delete {
		do("delete", ef, a.delete, &res.Deleted)
	}
	return res, errors.Join(errs...)
}

func (a *Applier) backoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxElapsedTime = a.MaxElapsed
	return b
}

// errNotOurs is a name taken by an EnvoyFilter without our label.
var errNotOurs = errors.New("an EnvoyFilter of that name exists without our label: rename or delete it")

func (a *Applier) create(ctx context.Context, ef *model.EnvoyFilter) error {
	err := a.Client.Create(ctx, ef.Object(), client.FieldOwner(FieldOwner))
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing := &clientnetworking.EnvoyFilter{}
	if err := a.Live.Get(ctx, client.ObjectKey{Namespace: ef.Namespace, Name: ef.Name}, existing); err != nil {
		return err
	}
	if existing.Labels[model.ManagedByLabel] != model.ManagedByValue {
		return backoff.Permanent(errNotOurs)
	}
	// Ours, created by an earlier push the cache has not seen yet.
	return a.apply(ctx, ef)
}

func (a *Applier) apply(ctx context.Context, ef *model.EnvoyFilter) error {
	doc, err := ef.Document()
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(doc); err != nil {
		return fmt.Errorf("decoding EnvoyFilter %s: %w", ef.Key(), err)
	}
	return a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership)
}

func (a *Applier) delete(ctx context.Context, ef *model.EnvoyFilter) error {
	err := a.Client.Delete(ctx, ef.Object())
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// retriable tells passing failures from ones that a retry cannot fix (an object the
// apiserver rejects).
func retriable(err error) bool {
	return !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) && !apierrors.IsForbidden(err) &&
		!apierrors.IsMethodNotSupported(err) && !apierrors.IsNotAcceptable(err) && !apierrors.IsUnsupportedMediaType(err) &&
		!errors.Is(err, context.Canceled)
}
