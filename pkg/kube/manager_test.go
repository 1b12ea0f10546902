package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	istiometa "istio.io/api/meta/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/test/controlplane"
)

// TestNewManagerLogger: the manager logs through the logger it is given, not the global
// one, so that several managers in a process (tests) keep their logs apart.
func TestNewManagerLogger(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{})
	mgr, err := NewManager(apiserver.RestConfig(t), Options{Logger: log, MetricsAddr: "0", ProbeAddr: "0"})
	if err != nil {
		t.Fatal(err)
	}
	mgr.GetLogger().Info("through the given logger")
	if len(lines) != 1 || !strings.Contains(lines[0], "through the given logger") {
		t.Fatalf("the manager logged %q, want one line through the given logger", lines)
	}
}

// TestPprofServedWhenAsked: with PprofAddr the manager serves Go's profiles there,
// the heap profile among them.
func TestPprofServedWhenAsked(t *testing.T) {
	addrs, err := controlplane.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := NewManager(apiserver.RestConfig(t), Options{MetricsAddr: "0", ProbeAddr: "0", PprofAddr: addrs[0], SeveralManagersPerProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, mgr)
	waitFor(t, "a heap profile on "+addrs[0], func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs[0]+"/debug/pprof/heap?debug=1", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
			return fmt.Errorf("status %d, %.80q", resp.StatusCode, body)
		}
		return nil
	})
}

// runManager starts mgr until the test ends.
func runManager(t *testing.T, mgr manager.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

func svc(portName string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: portName, Port: 20880}}},
	}
}

func TestServiceChangeMatters(t *testing.T) {
	iface := map[string]string{"interface": "a.B"}
	relabelled := svc("tcp-dubbo", iface)
	relabelled.Labels = map[string]string{"x": "y"}
	proto := "tcp"
	withAppProtocol := svc("tcp-dubbo", iface)
	withAppProtocol.Spec.Ports[0].AppProtocol = &proto
	sameAppProtocol := svc("tcp-dubbo", iface)
	other := "tcp"
	sameAppProtocol.Spec.Ports[0].AppProtocol = &other

	cases := []struct {
		name     string
		old, new *corev1.Service
		want     bool
	}{
		{"added dubbo", nil, svc("tcp-dubbo", iface), true},
		{"added http", nil, svc("http", nil), false},
		{"deleted dubbo", svc("tcp-dubbo", iface), nil, true},
		{"port renamed away from dubbo", svc("tcp-dubbo", iface), svc("tcp", iface), true},
		{"annotation changed", svc("tcp-dubbo", iface), svc("tcp-dubbo", map[string]string{"interface": "a.C"}), true},
		{"only labels changed", svc("tcp-dubbo", iface), relabelled, false},
		{"equal ports behind different pointers", withAppProtocol, sameAppProtocol, false},
		{"http service changed", svc("http", nil), svc("http", iface), false},
	}
	for _, c := range cases {
		if got := ServiceChangeMatters(c.old, c.new); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// TestCacheHoldsHeadlessSlicesTrimmed: the manager's cache holds the EndpointSlices
// the EndpointSlice controller labels headless, without what the translation never
// reads, and no other slice.
func TestCacheHoldsHeadlessSlicesTrimmed(t *testing.T) {
	cfg := apiserver.RestConfig(t)
	admin := adminClient(t, cfg)
	ns := testNamespace(t, admin, "slices")
	ctx := t.Context()
	slice := func(name string, labels map[string]string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels,
				Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](6379)}},
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{"10.1.0.50"},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
				NodeName:   ptr.To("node-1"),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name + "-0"},
			}},
		}
	}
	headless := slice("cache-abc", map[string]string{discoveryv1.LabelServiceName: "cache", corev1.IsHeadlessService: ""})
	clusterIP := slice("web-abc", map[string]string{discoveryv1.LabelServiceName: "web"})
	for _, eps := range []*discoveryv1.EndpointSlice{headless, clusterIP} {
		if err := admin.Create(ctx, eps); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), eps) })
	}

	mgr, err := NewManager(cfg, Options{MetricsAddr: "0", ProbeAddr: "0", SeveralManagersPerProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, mgr)
	var got discoveryv1.EndpointSliceList
	waitFor(t, "the cache's EndpointSlices", func(ctx context.Context) error {
		if err := mgr.GetCache().List(ctx, &got, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(got.Items) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	if len(got.Items) != 1 || got.Items[0].Name != headless.Name {
		var names []string
		for _, eps := range got.Items {
			names = append(names, eps.Name)
		}
		t.Fatalf("cached slices %v, want %s alone", names, headless.Name)
	}
	cached := got.Items[0]
	if cached.ManagedFields != nil || cached.Annotations != nil || cached.Ports != nil ||
		cached.Labels[discoveryv1.LabelServiceName] != "cache" || cached.ResourceVersion == "" {
		t.Errorf("cached slice's metadata %+v, ports %v: want labels and identity only", cached.ObjectMeta, cached.Ports)
	}
	want := []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.50"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}
	if diff := cmp.Diff(want, cached.Endpoints); diff != "" {
		t.Errorf("cached endpoints (-want +got):\n%s", diff)
	}
}

func serviceEntry(annotations map[string]string, addresses ...string) *clientnetworkingv1.ServiceEntry {
	se := &clientnetworkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "se", Namespace: "n", Annotations: annotations}}
	for _, a := range addresses {
		se.Status.Addresses = append(se.Status.Addresses, &networking.ServiceEntryAddress{Value: a, Host: "se.example"})
	}
	return se
}

func TestServiceEntryChangeMatters(t *testing.T) {
	iface := map[string]string{"interface": "a.B"}
	relabelled := serviceEntry(iface)
	relabelled.Labels = map[string]string{model.AutoallocateLabel: "false"}
	newVersion := serviceEntry(iface, "240.240.0.1")
	newVersion.ResourceVersion = "2"
	cases := []struct {
		name     string
		old, new *clientnetworkingv1.ServiceEntry
		want     bool
	}{
		{"added without addresses (istiod tells)", nil, serviceEntry(iface), false},
		{"added with addresses (istiod's copy may have come first)", nil, serviceEntry(iface, "240.240.0.1"), true},
		{"addresses allocated", serviceEntry(iface), serviceEntry(iface, "240.240.0.1"), true},
		{"address reallocated", serviceEntry(iface, "240.240.0.1"), serviceEntry(iface, "240.240.0.2"), true},
		{"annotation changed", serviceEntry(iface), serviceEntry(map[string]string{"interface": "a.C"}), true},
		{"labels changed", serviceEntry(iface), relabelled, true},
		{"only the resource version changed", serviceEntry(iface, "240.240.0.1"), newVersion, false},
	}
	for _, c := range cases {
		if got := ServiceEntryChangeMatters(c.old, c.new); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// TestTrimServiceEntry: the cache keeps of a ServiceEntry its identity, labels,
// annotations and status addresses, not its spec (istiod sends that), the copies of
// the spec in its managed fields and last-applied annotation, or its conditions.
func TestTrimServiceEntry(t *testing.T) {
	se := serviceEntry(map[string]string{"interface": "a.B", corev1.LastAppliedConfigAnnotation: `{"spec":{}}`}, "240.240.0.1", "2001:2::1")
	se.ResourceVersion, se.Labels = "7", map[string]string{"app": "x"}
	se.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	se.Spec.Hosts = []string{"se.example"}
	se.Status.Conditions = []*istiometa.IstioCondition{{Type: "Reconciled"}}
	got, err := TrimServiceEntry(se)
	if err != nil {
		t.Fatal(err)
	}
	trimmed, ok := got.(*clientnetworkingv1.ServiceEntry)
	if !ok {
		t.Fatalf("got a %T", got)
	}
	if len(trimmed.Spec.GetHosts()) != 0 || trimmed.ManagedFields != nil || trimmed.Status.Conditions != nil {
		t.Errorf("kept spec %v, managed fields %v, conditions %v", trimmed.Spec.GetHosts(), trimmed.ManagedFields, trimmed.Status.Conditions)
	}
	if _, ok := trimmed.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Errorf("kept the last applied configuration")
	}
	if trimmed.Name != "se" || trimmed.Namespace != "n" || trimmed.ResourceVersion != "7" || trimmed.Labels["app"] != "x" ||
		len(trimmed.Annotations) != 1 || trimmed.Annotations["interface"] != "a.B" || len(trimmed.Status.Addresses) != 2 {
		t.Errorf("lost what the translation reads: %+v", trimmed)
	}
	other := &corev1.Service{}
	if got, err := TrimServiceEntry(other); got != other || err != nil {
		t.Errorf("another kind: got %v, %v; want it as it was", got, err)
	}
}

func TestEndpointSliceChangeMatters(t *testing.T) {
	slice := func(service string, ready bool, addresses ...string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			Endpoints:  []discoveryv1.Endpoint{{Addresses: addresses, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
		}
	}
	relabelled := slice("cache", true, "10.0.0.1")
	relabelled.Labels["x"] = "y"
	for _, c := range []struct {
		name     string
		old, new *discoveryv1.EndpointSlice
		want     bool
	}{
		{"added", nil, slice("cache", true, "10.0.0.1"), true},
		{"deleted", slice("cache", true, "10.0.0.1"), nil, true},
		{"same ready addresses", slice("cache", true, "10.0.0.1"), relabelled, false},
		{"an address more", slice("cache", true, "10.0.0.1"), slice("cache", true, "10.0.0.1", "10.0.0.2"), true},
		{"no longer ready", slice("cache", true, "10.0.0.1"), slice("cache", false, "10.0.0.1"), true},
		{"not ready either way", slice("cache", false, "10.0.0.1"), slice("cache", false, "10.0.0.2"), false},
		{"another Service", slice("cache", true, "10.0.0.1"), slice("other", true, "10.0.0.1"), true},
	} {
		if got := EndpointSliceChangeMatters(c.old, c.new); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
