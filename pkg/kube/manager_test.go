package kube

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	istiometa "istio.io/api/meta/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"aeraki.io/aeraki/pkg/model"
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
