package kube

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
