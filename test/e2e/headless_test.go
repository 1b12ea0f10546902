package e2e

import (
	"maps"
	"strings"
	"testing"
	"time"

	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"aeraki.io/aeraki/test/controlplane"
)

// TestHeadlessServiceScales: the pods of a headless Redis Service coming and going
// (its EndpointSlice changing) rewrite that Service's outbound EnvoyFilter, one
// patch per endpoint listener, and no other EnvoyFilter.
func TestHeadlessServiceScales(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	d := dubboService{name: "bystander", host: "bystander.dubbo.example", vip: "240.240.0.95"}
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "cache"},
			Ports:     []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
	if _, err := e.kube.CoreV1().Services(appNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Labelled as Kubernetes' EndpointSlice controller labels a headless Service's
	// slices; a slice without the label (a Service with a cluster IP's, as far as
	// the label tells) is not read.
	slice := func(name, address string, labels map[string]string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: appNS, Labels: labels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("tcp-redis"), Port: ptr.To[int32](6379), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{address}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
	}
	unlabelled := slice("cache-stray", "10.1.0.49", map[string]string{discoveryv1.LabelServiceName: "cache"})
	if _, err := e.kube.DiscoveryV1().EndpointSlices(appNS).Create(ctx, unlabelled, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created, err := e.kube.DiscoveryV1().EndpointSlices(appNS).Create(ctx,
		slice("cache-1", "10.1.0.50", map[string]string{discoveryv1.LabelServiceName: "cache", corev1.IsHeadlessService: ""}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	outbound := types.NamespacedName{Namespace: rootNS, Name: "aeraki-outbound-cache." + appNS + ".svc.cluster.local-6379"}
	listeners := func(want ...string) func(*clientnetworkingv1alpha3.EnvoyFilter) bool {
		return func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool {
			var got []string
			for _, p := range ef.Spec.GetConfigPatches() {
				if name := p.GetMatch().GetListener().GetName(); strings.HasSuffix(name, "_6379") {
					got = append(got, name)
				}
			}
			return strings.Join(got, ",") == strings.Join(want, ",")
		}
	}
	e.waitSpec(t, outbound, "", listeners("10.1.0.50_6379"))

	// A second pod: the Service's filter gains its listener; nothing else is written,
	// as the apiserver counts writes and as the other filters' versions show.
	time.Sleep(time.Second) // the bystander's writes are long done
	others := e.versions(t, d.filters()...)
	before, err := e.cp.EnvoyFilterWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	created.Endpoints = append(created.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0.51"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	if _, err := e.kube.DiscoveryV1().EndpointSlices(appNS).Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSpec(t, outbound, "", listeners("10.1.0.50_6379", "10.1.0.51_6379"))
	// Whatever else the change caused would be written by now: pushes wait a debounce
	// of 100ms at most here (EndpointSlices do not settle).
	time.Sleep(2 * time.Second)
	after, err := e.cp.EnvoyFilterWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := controlplane.WritesSince(before, after), map[string]int{"PUT": 1}; !maps.Equal(got, want) {
		t.Errorf("EnvoyFilter writes %v, want %v (the Service's filter updated, and nothing else)", got, want)
	}
	e.checkUnchanged(t, others)
}
