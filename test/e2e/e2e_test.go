// Package e2e runs the controller between a real etcd, kube-apiserver and istiod on
// loopback, and checks what a sidecar receives.
package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	dubboFilter = "envoy.filters.network.dubbo_proxy"
	tcpFilter   = "envoy.filters.network.tcp_proxy"
	rootNS      = "istio-system"
	appNS       = "dubbo"
	timeout     = 60 * time.Second
)

type env struct {
	cp    *controlplane.ControlPlane
	kube  kubernetes.Interface
	istio istioclient.Interface
}

// start brings up the control plane and the controller, stopped at the end of the test.
func start(t *testing.T) *env {
	t.Helper()
	ctrl.SetLogger(testr.New(t))
	ctx := t.Context()
	cp, err := controlplane.Start(ctx, controlplane.Options{Istiod: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	e := &env{cp: cp, kube: kubernetes.NewForConfigOrDie(cp.RestConfig), istio: istioclient.NewForConfigOrDie(cp.RestConfig)}
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv, err := bootstrap.New(cp.RestConfig, bootstrap.Options{
		IstiodAddr:        cp.IstiodAddr,
		RootNamespace:     rootNS,
		DomainSuffix:      "cluster.local",
		Debounce:          envoyfilter.DebounceOptions{Quiet: 100 * time.Millisecond, Max: time.Second},
		XDSInitialBackoff: 100 * time.Millisecond,
		XDSMaxBackoff:     time.Second,
		Manager: kube.Options{
			LeaderElection: true, LeaderElectionID: "aeraki-e2e", LeaderElectionNamespace: rootNS,
			MetricsAddr: "0", ProbeAddr: "0", SeveralManagersPerProcess: true,
		},
	}, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return e
}

func TestMain(m *testing.M) {
	if os.Getenv(controlplane.EnvBinDir) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set: run `make e2e` or `make test`\n", controlplane.EnvBinDir)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestDubboServiceEntry(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	const host, vip = "org.apache.dubbo.samples.basic.api.demoservice", "240.240.0.10"
	se := &clientnetworking.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "dubbo-demo", Namespace: appNS,
			Annotations: map[string]string{"interface": "org.apache.dubbo.samples.basic.api.DemoService"}},
	}
	se.Spec.Hosts = []string{host}
	se.Spec.Addresses = []string{vip}
	se.Spec.Ports = []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}}
	se.Spec.Resolution = networking.ServiceEntry_STATIC
	se.Spec.Location = networking.ServiceEntry_MESH_INTERNAL
	se.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": "dubbo-provider"}}
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	outbound := "aeraki-outbound-" + host + "-20880"
	e.waitEnvoyFilter(t, rootNS, outbound, true)
	e.waitEnvoyFilter(t, appNS, "aeraki-inbound-"+host+"-20880", true)
	e.waitListenerFilter(t, vip+"_20880", dubboFilter)

	if err := e.istio.NetworkingV1().ServiceEntries(appNS).Delete(ctx, se.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEnvoyFilter(t, rootNS, outbound, false)
	e.waitEnvoyFilter(t, appNS, "aeraki-inbound-"+host+"-20880", false)
}

func TestDubboKubernetesService(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dubbo-provider", Namespace: appNS,
			Annotations: map[string]string{"interface": "org.apache.dubbo.samples.basic.api.DemoService"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "dubbo-provider"},
			Ports:    []corev1.ServicePort{{Name: "tcp-dubbo", Port: 20880, TargetPort: intstr.FromInt32(20880)}},
		},
	}
	created, err := e.kube.CoreV1().Services(appNS).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host := "dubbo-provider." + appNS + ".svc.cluster.local"
	outbound := "aeraki-outbound-" + host + "-20880"
	e.waitEnvoyFilter(t, rootNS, outbound, true)
	e.waitEnvoyFilter(t, appNS, "aeraki-inbound-"+host+"-20880", true)
	e.waitListenerFilter(t, created.Spec.ClusterIP+"_20880", dubboFilter)

	if err := e.kube.CoreV1().Services(appNS).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEnvoyFilter(t, rootNS, outbound, false)
}

// waitEnvoyFilter waits until the EnvoyFilter exists (or is gone).
func (e *env) waitEnvoyFilter(t *testing.T, namespace, name string, exists bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := e.istio.NetworkingV1alpha3().EnvoyFilters(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return !exists, nil
		}
		if err != nil {
			return false, err
		}
		return exists, nil
	})
	if err != nil {
		t.Fatalf("EnvoyFilter %s/%s exists=%v never came about: %v", namespace, name, exists, err)
	}
}

// waitListenerFilter waits until a sidecar's LDS has the listener with the filter.
func (e *env) waitListenerFilter(t *testing.T, name, filter string) {
	t.Helper()
	var last []string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ls, err := e.cp.SidecarListeners(ctx, "10.1.0.1", appNS, map[string]string{"app": "dubbo-consumer"})
		if err != nil {
			t.Logf("sidecar listeners: %v", err)
			return false, nil
		}
		last = controlplane.FilterNames(ls[name])
		return slices.Contains(last, filter) && !slices.Contains(last, tcpFilter), nil
	})
	if err != nil {
		t.Fatalf("listener %s never carried %s instead of tcp_proxy; last filters: %v", name, filter, last)
	}
}
