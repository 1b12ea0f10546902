package e2e

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"aeraki.io/aeraki/test/controlplane"
)

// TestAutoAllocatedAddress: istiod allocates an address for a ServiceEntry created
// without one and writes it into the ServiceEntry's status, which it does not send
// the controller; the controller reads it from the apiserver and puts the outbound
// filter on that address's listener, which a sidecar that captures DNS then gets.
func TestAutoAllocatedAddress(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	se := &clientnetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: appNS,
		Annotations: map[string]string{"interface": "org.example.Greeter"}}}
	se.Spec.Hosts = []string{"greeter.external.example"}
	se.Spec.Ports = []*networking.ServicePort{{Number: 20881, Name: "tcp-dubbo", Protocol: "TCP"}}
	se.Spec.Resolution = networking.ServiceEntry_DNS
	se.Spec.Location = networking.ServiceEntry_MESH_EXTERNAL
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var vip string
	var allocated *clientnetworking.ServiceEntry
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got, err := e.istio.NetworkingV1().ServiceEntries(appNS).Get(ctx, se.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, a := range got.Status.GetAddresses() {
			if ip, err := netip.ParseAddr(a.GetValue()); err == nil && ip.Is4() {
				vip, allocated = ip.String(), got
			}
		}
		return vip != "", nil
	})
	if err != nil {
		t.Fatalf("istiod allocated no IPv4 address for the ServiceEntry: %v", err)
	}
	t.Logf("istiod allocated %s", vip)
	s := e.sidecar(t, controlplane.SidecarOptions{IP: "10.1.0.7", Namespace: appNS, Labels: map[string]string{"app": "client"},
		Metadata: map[string]string{"DNS_CAPTURE": "true"}})
	e.waitAllocatedListener(t, s, vip+"_20881")

	// Another address, as istiod gives one when it finds two ServiceEntries with the
	// same: a change of status alone, which istiod does not tell the controller.
	const moved = "240.240.0.200"
	for _, a := range allocated.Status.Addresses {
		if ip, err := netip.ParseAddr(a.GetValue()); err == nil && ip.Is4() {
			a.Value = moved
		}
	}
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).UpdateStatus(ctx, allocated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAllocatedListener(t, s, moved+"_20881")
}

// waitAllocatedListener waits until the outbound EnvoyFilter of the ServiceEntry of
// TestAutoAllocatedAddress patches the listener name, and the sidecar has it with the
// Dubbo filter in tcp_proxy's place.
func (e *env) waitAllocatedListener(t *testing.T, s *controlplane.Sidecar, name string) {
	t.Helper()
	outbound := types.NamespacedName{Namespace: rootNS, Name: "aeraki-outbound-greeter.external.example-20881"}
	e.waitSpec(t, outbound, "", func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool {
		return slices.ContainsFunc(ef.Spec.GetConfigPatches(), func(p *networking.EnvoyFilter_EnvoyConfigObjectPatch) bool {
			return p.GetMatch().GetListener().GetName() == name
		})
	})
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if _, err := s.WaitAccepted(ctx, func(ls map[string]*listener.Listener) bool {
		filters := controlplane.FilterNames(ls[name])
		return slices.Contains(filters, dubboFilter) && !slices.Contains(filters, tcpFilter)
	}); err != nil {
		t.Fatalf("listener %s never carried %s instead of tcp_proxy: %v; listeners %s", name, dubboFilter, err,
			strings.Join(slices.Sorted(maps.Keys(s.Listeners())), ", "))
	}
}
