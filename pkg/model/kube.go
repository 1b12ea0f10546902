package model

import (
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/kube"
	"istio.io/istio/pkg/config/schema/gvk"
	corev1 "k8s.io/api/core/v1"
)

// SyntheticServiceEntry returns the ServiceEntry istiod derives from a Kubernetes
// Service and serves to api clients as synthetic-<name>: the cluster-local host, the
// ClusterIP as address, the ports by name and number, the selector as workload
// selector, and no annotations (those come from the Service through
// Snapshot.KubeService, as in the controller).
func SyntheticServiceEntry(svc *corev1.Service, domainSuffix string) config.Config {
	se := &networking.ServiceEntry{
		Hosts:      []string{svc.Name + "." + svc.Namespace + ".svc." + domainSuffix},
		Location:   networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
	}
	switch ip := svc.Spec.ClusterIP; ip {
	case "", corev1.ClusterIPNone:
		se.Resolution = networking.ServiceEntry_NONE
		se.Addresses = []string{"0.0.0.0"} // as istiod; clients get per-endpoint listeners, not a service VIP
	default:
		se.Addresses = []string{ip}
	}
	for _, p := range svc.Spec.Ports {
		se.Ports = append(se.Ports, &networking.ServicePort{
			Number:   uint32(p.Port), //nolint:gosec // ports are 1..65535
			Name:     p.Name,
			Protocol: string(kube.ConvertProtocol(p.Port, p.Name, p.Protocol, p.AppProtocol)),
		})
	}
	if len(svc.Spec.Selector) > 0 {
		se.WorkloadSelector = &networking.WorkloadSelector{Labels: svc.Spec.Selector}
	}
	return config.Config{
		Meta: config.Meta{
			GroupVersionKind: gvk.ServiceEntry,
			Name:             SyntheticPrefix + svc.Name,
			Namespace:        svc.Namespace,
		},
		Spec: se,
	}
}
