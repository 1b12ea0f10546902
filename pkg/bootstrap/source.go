package bootstrap

import (
	"context"
	"fmt"
	"slices"

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
}

func (s *source) HasSynced() bool { return s.config.HasSynced() }

func (s *source) Snapshot() (*model.Snapshot, error) {
	ses, vss, drs := s.config.Snapshot()
	defaults := s.config.ExportDefaults()
	ctx := context.Background()
	hidden, err := s.hiddenServices(ctx, ses, defaults)
	if err != nil {
		return nil, err
	}
	s.config.SetHiddenServices(hidden)
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
		export := model.ExportNamespaces(manifest.ServiceExportTo(svc), defaults.ServiceEntry, svc.Namespace)
		if export == nil || slices.Contains(export, s.rootNamespace) || svc.Spec.Type == corev1.ServiceTypeExternalName ||
			!kube.HasSupportedPort(svc) || have[types.NamespacedName{Namespace: svc.Namespace, Name: model.SyntheticPrefix + svc.Name}] {
			continue
		}
		se := manifest.SyntheticServiceEntry(svc, s.domainSuffix)
		out = append(out, model.Object{Name: se.Name, Namespace: se.Namespace, ResourceVersion: svc.ResourceVersion,
			Created: svc.CreationTimestamp.Time, Spec: se.Spec})
	}
	return out, nil
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
