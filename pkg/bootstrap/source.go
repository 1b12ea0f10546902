package bootstrap

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/kubeobj"
)

// configSource is the Istio config from istiod.
type configSource interface {
	HasSynced() bool
	Snapshot() (serviceEntries, virtualServices, destinationRules []model.Object)
	// Changes returns what changed since Snapshot or Changes (see xds.Watcher).
	Changes() (changes []model.Change, whole bool)
	// Get returns a ServiceEntry; nil when istiod shows none.
	Get(namespace, name string) *model.Object
	ExportDefaults() model.ExportDefaults
	// WorkloadEntries are those with a ports map.
	WorkloadEntries() []model.Object
	// SetHiddenServices tells the source of the services the snapshot adds to its
	// own (see hiddenServices): changes to their routing count too.
	SetHiddenServices(serviceEntries []model.Object)
}

// source is the translation input: Istio config from istiod, completed by the
// Kubernetes objects in the manager's cache. A read that fails for any reason but
// absence fails the snapshot (or the lookup, and with it the translation), so that
// no push writes from a partial view.
type source struct {
	config configSource
	cache  client.Reader
	// secrets reads Secrets from the apiserver itself: the controller may read
	// them only in the namespaces that granted it, and caches none.
	secrets       client.Reader
	domainSuffix  string
	rootNamespace string
	// changed is what the informers told since the last Snapshot or Changes.
	changed kubeChanges
	// hidden are the hidden services (see hiddenServices) the last Snapshot or
	// Changes gave, by key.
	hidden map[string]model.Object
}

// kubeChanges are the changes of the Kubernetes objects the translation reads, as
// the informers' handlers tell them.
type kubeChanges struct {
	mu  sync.Mutex
	set kubeChangeSet
}

type kubeChangeSet struct {
	// services are the keys of the services whose Kubernetes Service, EndpointSlices
	// or ServiceEntry (its apiserver copy) changed; kubeServices the Kubernetes
	// Services, whose hidden entries to decide again.
	services, kubeServices model.Keys
	redis                  map[model.ObjectRef]bool
	// secrets says the Secrets were polled (see pollSecrets).
	secrets bool
}

func (k *kubeChanges) record(change func(*kubeChangeSet)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.set.services == nil {
		k.set = kubeChangeSet{services: model.Keys{}, kubeServices: model.Keys{}, redis: map[model.ObjectRef]bool{}}
	}
	change(&k.set)
}

// serviceEntry records a change of a ServiceEntry's apiserver copy.
func (k *kubeChanges) serviceEntry(namespace, name string) {
	k.record(func(k *kubeChangeSet) { k.services.Add(namespace + "/" + name) })
}

// kubeService records a change of a Kubernetes Service, or of its EndpointSlices.
func (k *kubeChanges) kubeService(namespace, name string) {
	k.record(func(k *kubeChangeSet) {
		k.services.Add(namespace + "/" + model.SyntheticPrefix + name)
		k.kubeServices.Add(namespace + "/" + name)
	})
}

func (k *kubeChanges) redisObject(ref model.ObjectRef) {
	k.record(func(k *kubeChangeSet) { k.redis[ref] = true })
}

func (k *kubeChanges) secretsPolled() {
	k.record(func(k *kubeChangeSet) { k.secrets = true })
}

// take returns the changes recorded since it was last called.
func (k *kubeChanges) take() kubeChangeSet {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.set
	k.set = kubeChangeSet{}
	return out
}

func (s *source) HasSynced() bool { return s.config.HasSynced() }

func (s *source) Snapshot() (*model.Snapshot, error) {
	// What the informers told until now is in the snapshot.
	s.changed.take()
	ses, vss, drs := s.config.Snapshot()
	defaults := s.config.ExportDefaults()
	ctx := context.Background()
	hidden, err := s.hiddenServices(ctx, ses, defaults)
	if err != nil {
		return nil, err
	}
	s.config.SetHiddenServices(hidden)
	s.hidden = map[string]model.Object{}
	for _, o := range hidden {
		s.hidden[o.Namespace+"/"+o.Name] = o
	}
	snap := &model.Snapshot{
		ServiceEntries:    append(ses, hidden...),
		VirtualServices:   vss,
		DestinationRules:  drs,
		WorkloadEntries:   s.config.WorkloadEntries(),
		DomainSuffix:      s.domainSuffix,
		ExportDefaults:    defaults,
		KubeService:       s.kubeService,
		ServiceEntryState: s.serviceEntryState,
		Secret:            s.secret,
	}
	var rss redisv1alpha1.RedisServiceList
	if err := s.cache.List(ctx, &rss); err != nil {
		return nil, fmt.Errorf("listing RedisServices: %w", err)
	}
	for i := range rss.Items {
		snap.RedisServices = append(snap.RedisServices, kubeobj.RedisService(&rss.Items[i]))
	}
	var rds redisv1alpha1.RedisDestinationList
	if err := s.cache.List(ctx, &rds); err != nil {
		return nil, fmt.Errorf("listing RedisDestinations: %w", err)
	}
	for i := range rds.Items {
		snap.RedisDestinations = append(snap.RedisDestinations, kubeobj.RedisDestination(&rds.Items[i]))
	}
	return snap, nil
}

// Changes returns what changed since the last Snapshot or Changes: the objects
// istiod's pushes changed, the Redis objects and the hidden services (see
// hiddenServices) as they are now, and the keys of the rest.
func (s *source) Changes() (model.Delta, error) {
	objs, whole := s.config.Changes()
	k := s.changed.take()
	if whole {
		return model.Delta{Whole: true}, nil
	}
	d := model.Delta{Services: slices.Collect(maps.Keys(k.services)), RereadSecrets: k.secrets}
	// An entry of a Kubernetes Service is istiod's, or ours while istiod does not
	// show it: both are decided again when either changes.
	synthetic := model.Keys{}
	for _, c := range objs {
		if c.Kind == model.ServiceEntryKind && strings.HasPrefix(c.Object.Name, model.SyntheticPrefix) {
			synthetic.Add(c.Object.Namespace + "/" + c.Object.Name)
			continue
		}
		d.Objects = append(d.Objects, c)
	}
	for key := range k.kubeServices {
		ns, name, _ := strings.Cut(key, "/")
		synthetic.Add(ns + "/" + model.SyntheticPrefix + name)
	}
	ctx := context.Background()
	if s.hidden == nil {
		s.hidden = map[string]model.Object{}
	}
	hiddenChanged := false
	for _, key := range slices.Sorted(maps.Keys(synthetic)) {
		c, changed, err := s.syntheticEntry(key)
		if err != nil {
			return model.Delta{}, err
		}
		hiddenChanged = hiddenChanged || changed
		d.Objects = append(d.Objects, c)
	}
	if hiddenChanged {
		s.config.SetHiddenServices(slices.Collect(maps.Values(s.hidden)))
	}
	for ref := range k.redis {
		c, err := s.redisObject(ctx, ref)
		if err != nil {
			return model.Delta{}, err
		}
		d.Objects = append(d.Objects, c)
	}
	return d, nil
}

// syntheticEntry returns the ServiceEntry of a Kubernetes Service as it is now:
// istiod's, or while istiod does not show it and the Service is hidden, ours; else
// deleted. It reports whether the hidden services changed.
func (s *source) syntheticEntry(key string) (model.Change, bool, error) {
	ns, name, _ := strings.Cut(key, "/")
	c := model.Change{Kind: model.ServiceEntryKind, Object: model.Object{Namespace: ns, Name: name}, Deleted: true}
	_, wasHidden := s.hidden[key]
	if o := s.config.Get(ns, name); o != nil {
		delete(s.hidden, key)
		c.Object, c.Deleted = *o, false
		return c, wasHidden, nil
	}
	svc := &corev1.Service{}
	svcName := strings.TrimPrefix(name, model.SyntheticPrefix)
	found, err := s.get(ns, svcName, svc)
	if err != nil {
		return c, false, fmt.Errorf("reading Service %s/%s: %w", ns, svcName, err)
	}
	if found && s.hides(svc, s.config.ExportDefaults()) {
		o := s.hiddenEntry(svc)
		s.hidden[key] = o
		c.Object, c.Deleted = o, false
		return c, true, nil
	}
	delete(s.hidden, key)
	return c, wasHidden, nil
}

// redisObject returns a RedisService or RedisDestination as it is now.
func (s *source) redisObject(ctx context.Context, ref model.ObjectRef) (model.Change, error) {
	key := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
	c := model.Change{Kind: model.RedisServiceKind, Object: model.Object{Namespace: ref.Namespace, Name: ref.Name}, Deleted: true}
	var err error
	if ref.Kind == model.KindRedisDestination {
		c.Kind = model.RedisDestinationKind
		rd := &redisv1alpha1.RedisDestination{}
		if err = s.cache.Get(ctx, key, rd); err == nil {
			c.Object, c.Deleted = kubeobj.RedisDestination(rd), false
		}
	} else {
		rs := &redisv1alpha1.RedisService{}
		if err = s.cache.Get(ctx, key, rs); err == nil {
			c.Object, c.Deleted = kubeobj.RedisService(rs), false
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return c, fmt.Errorf("reading %s %s/%s: %w", ref.Kind, ref.Namespace, ref.Name, err)
	}
	return c, nil
}

// hiddenServices returns, as the ServiceEntries istiod derives from them, the
// Kubernetes Services with a supported port that istiod does not show the
// controller: it lists Kubernetes Services as a sidecar of the controller's
// namespace (the root namespace) sees them, so one not exported there (its
// networking.istio.io/exportTo, or the mesh's default) is left out, although the
// sidecars of the namespaces it is exported to use it. The controller's own cache
// has them. ExternalName Services are istiod's alone to convert.
func (s *source) hiddenServices(ctx context.Context, shown []model.Object, defaults model.ExportDefaults) ([]model.Object, error) {
	var list corev1.ServiceList
	if err := s.cache.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	have := make(map[types.NamespacedName]bool, len(shown))
	for _, se := range shown {
		have[types.NamespacedName{Namespace: se.Namespace, Name: se.Name}] = true
	}
	var out []model.Object
	for i := range list.Items {
		svc := &list.Items[i]
		if !s.hides(svc, defaults) || have[types.NamespacedName{Namespace: svc.Namespace, Name: model.SyntheticPrefix + svc.Name}] {
			continue
		}
		out = append(out, s.hiddenEntry(svc))
	}
	return out, nil
}

// hides reports whether istiod hides a Service from the controller: it is not
// exported to the root namespace (and has a port of a supported protocol; istiod
// converts ExternalName Services itself).
func (s *source) hides(svc *corev1.Service, defaults model.ExportDefaults) bool {
	export := model.ExportNamespaces(manifest.ServiceExportTo(svc), defaults.ServiceEntry, svc.Namespace)
	return export != nil && !slices.Contains(export, s.rootNamespace) && svc.Spec.Type != corev1.ServiceTypeExternalName &&
		kube.HasSupportedPort(svc)
}

// hiddenEntry is the ServiceEntry istiod derives from a Service.
func (s *source) hiddenEntry(svc *corev1.Service) model.Object {
	se := manifest.SyntheticServiceEntry(svc, s.domainSuffix)
	return model.Object{Name: se.Name, Namespace: se.Namespace, ResourceVersion: svc.ResourceVersion,
		Created: svc.CreationTimestamp.Time, Spec: se.Spec}
}

// get reads one object from the cache into obj: false with no error when it does
// not exist.
func (s *source) get(namespace, name string, obj client.Object) (bool, error) {
	err := s.cache.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

func (s *source) secret(namespace, name string) (*model.Secret, error) {
	secret := &corev1.Secret{}
	err := s.secrets.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case apierrors.IsForbidden(err):
		// An answer, not a failed read: the namespace did not grant it.
		return &model.Secret{Namespace: namespace, Name: name, Forbidden: true}, nil
	case err != nil:
		return nil, err
	}
	return kubeobj.Secret(secret), nil
}

func (s *source) serviceEntryState(namespace, name string) (*model.ServiceEntryState, error) {
	se := &clientnetworking.ServiceEntry{}
	found, err := s.get(namespace, name, se)
	if !found {
		return nil, err
	}
	return kubeobj.ServiceEntryState(se), nil
}

// endpointSliceService indexes EndpointSlices by the Service they belong to.
const endpointSliceService = "aeraki.serviceName"

func (s *source) kubeService(namespace, name string) (*model.KubeService, error) {
	svc := &corev1.Service{}
	found, err := s.get(namespace, name, svc)
	if !found {
		return nil, err
	}
	ks := kubeobj.Service(svc)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		var eps discoveryv1.EndpointSliceList
		if err := s.cache.List(context.Background(), &eps, client.InNamespace(namespace),
			client.MatchingFields{endpointSliceService: name}); err != nil {
			return nil, fmt.Errorf("listing the EndpointSlices of Service %s/%s: %w", namespace, name, err)
		}
		ks.Endpoints = kubeobj.Endpoints(eps.Items)
	}
	return ks, nil
}
