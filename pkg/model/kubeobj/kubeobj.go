// Package kubeobj turns Kubernetes objects into the model's views of them: the
// Secrets, Services, ServiceEntries and Redis objects a translation reads. It is the
// one place that knows both, so that the model and everything built on it need no
// Kubernetes types.
package kubeobj

import (
	"slices"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/model"
)

// Secret is s as the model sees it, with stringData folded into data as the API
// server stores it; nil for nil. Without stringData the data map is shared with s.
func Secret(s *corev1.Secret) *model.Secret {
	if s == nil {
		return nil
	}
	data := s.Data
	if len(s.StringData) > 0 {
		data = make(map[string][]byte, len(s.Data)+len(s.StringData))
		for k, v := range s.Data {
			data[k] = v
		}
		for k, v := range s.StringData {
			data[k] = []byte(v)
		}
	}
	return &model.Secret{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion, Data: data}
}

// Service is svc as the model sees it; nil for nil.
func Service(svc *corev1.Service) *model.KubeService {
	if svc == nil {
		return nil
	}
	out := &model.KubeService{
		ResourceVersion: svc.ResourceVersion,
		Annotations:     svc.Annotations,
		TargetPorts:     make(map[uint32]uint32, len(svc.Spec.Ports)),
	}
	for _, p := range svc.Spec.Ports {
		port := uint32(p.Port) //nolint:gosec // ports are 1..65535
		out.TargetPorts[port] = targetPort(p.TargetPort, port)
	}
	return out
}

// targetPort is the number a Service port's targetPort names: the port itself when
// unset, 0 when it is a name only the pods can resolve.
func targetPort(t intstr.IntOrString, port uint32) uint32 {
	switch {
	case t.IntValue() > 0:
		return uint32(t.IntValue()) //nolint:gosec // ports are 1..65535
	case t.String() == "" || t.String() == "0":
		return port
	default:
		return 0
	}
}

// RedisService is rs as an object of a model.Snapshot, its spec as Spec.
func RedisService(rs *redisv1alpha1.RedisService) model.Object { return object(rs, &rs.Spec) }

// RedisDestination is rd as an object of a model.Snapshot, its spec as Spec.
func RedisDestination(rd *redisv1alpha1.RedisDestination) model.Object {
	return object(rd, &rd.Spec)
}

func object(m metav1.Object, spec any) model.Object {
	return model.Object{
		Name: m.GetName(), Namespace: m.GetNamespace(), Annotations: m.GetAnnotations(),
		ResourceVersion: m.GetResourceVersion(), Generation: m.GetGeneration(),
		Created: m.GetCreationTimestamp().Time, Spec: spec,
	}
}

// Endpoints returns the ready addresses of a Service's EndpointSlices, sorted and
// without duplicates.
func Endpoints(eps []discoveryv1.EndpointSlice) []string {
	var out []string
	for i := range eps {
		for _, ep := range eps[i].Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			out = append(out, ep.Addresses...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TrimEndpointSlice is a cache transform: of an EndpointSlice it keeps what
// Endpoints reads (each endpoint's addresses and readiness) and its identity and
// labels (the cache indexes slices by their Service's name label), and drops the
// rest (managed fields, annotations, ports, each endpoint's target, node, zone,
// hints), which a large cluster's slices are mostly made of. It changes the slice
// in place, as a transform may, and keeps what it kept: it can run twice. Other
// objects pass unchanged.
func TrimEndpointSlice(obj any) (any, error) {
	eps, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	eps.ObjectMeta = metav1.ObjectMeta{
		Name: eps.Name, Namespace: eps.Namespace, Labels: eps.Labels,
		UID: eps.UID, ResourceVersion: eps.ResourceVersion,
	}
	eps.Ports = nil
	for i := range eps.Endpoints {
		ep := &eps.Endpoints[i]
		*ep = discoveryv1.Endpoint{Addresses: ep.Addresses, Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready}}
	}
	return eps, nil
}

// ServiceEntryState is what the model reads of a ServiceEntry from the apiserver;
// nil for nil.
func ServiceEntryState(se *clientnetworking.ServiceEntry) *model.ServiceEntryState {
	if se == nil {
		return nil
	}
	return &model.ServiceEntryState{Annotations: se.Annotations, Labels: se.Labels, Addresses: model.StatusAddresses(&se.Status)}
}
