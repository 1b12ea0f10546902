// Package e2e runs the controller between a real etcd, kube-apiserver and istiod on
// loopback, and checks what a sidecar receives.
package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	dubboFilter = "envoy.filters.network.dubbo_proxy"
	tcpFilter   = "envoy.filters.network.tcp_proxy"
	rootNS      = "istio-system"
	appNS       = "dubbo"
	timeout     = 60 * time.Second
	// settle is five times istiod's debounce (PILOT_DEBOUNCE_AFTER): the controllers
	// push only once istiod's config has been still that long. The debounce ceiling
	// is ten times the settle, as by default (10s and 1s): a ceiling close to the
	// settle would cut it short while istiod is slow to send what was applied.
	settle      = 500 * time.Millisecond
	debounceMax = 10 * settle
)

type env struct {
	cp    *controlplane.ControlPlane
	kube  kubernetes.Interface
	istio istioclient.Interface
	// shared says the controllers serve routes, so that port 20880, which only Dubbo
	// services declare here, has one client filter instead of one per service.
	shared bool
}

// start brings up the control plane and one controller, stopped at the end of the test.
func start(t *testing.T) *env {
	t.Helper()
	e := startControlPlane(t)
	e.runController(t, "controller", e.cp.RestConfig, e.options())
	return e
}

// startControlPlane brings up etcd, kube-apiserver and istiod with the application
// namespace, stopped at the end of the test; no controller yet.
func startControlPlane(t *testing.T) *env {
	t.Helper()
	return startControlPlaneWith(t, controlplane.Options{Istiod: true})
}

// startControlPlaneWith is startControlPlane with the control plane's options.
func startControlPlaneWith(t *testing.T, opts controlplane.Options) *env {
	t.Helper()
	ctx := t.Context()
	cp := controlplane.StartForTest(t, opts)
	e := &env{cp: cp, kube: kubernetes.NewForConfigOrDie(cp.RestConfig), istio: istioclient.NewForConfigOrDie(cp.RestConfig)}
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// options are the controller's options for this control plane: short debounce and
// reconnect backoff, leader election on, no resync.
func (e *env) options() bootstrap.Options {
	return bootstrap.Options{
		IstiodAddr:        e.cp.IstiodAddr,
		IstiodSecurity:    xds.Security{Plaintext: true},
		RootNamespace:     rootNS,
		DomainSuffix:      "cluster.local",
		Debounce:          push.DebounceOptions{Quiet: 100 * time.Millisecond, Max: debounceMax, Settle: settle},
		XDSInitialBackoff: 100 * time.Millisecond,
		XDSMaxBackoff:     time.Second,
		SecretPoll:        200 * time.Millisecond,
		Manager: kube.Options{
			LeaderElection: true, LeaderElectionID: "aeraki-e2e", LeaderElectionNamespace: rootNS,
			MetricsAddr: "0", ProbeAddr: "0", SeveralManagersPerProcess: true,
		},
	}
}

// replica is a controller running in the test process.
type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what Run returned; valid once done is closed
}

// runController runs a controller on cfg until the test ends (or stop). Its Run must
// return nil then.
func (e *env) runController(t *testing.T, name string, cfg *rest.Config, opts bootstrap.Options) *replica {
	t.Helper()
	log := testr.New(t).WithName(name)
	opts.Manager.Logger = log
	srv, err := bootstrap.New(cfg, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	return r
}

// stop cancels the controller, waits for its Run to return and returns its error.
func (r *replica) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// running reports whether the controller's Run has not returned.
func (r *replica) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(controlplane.EnvBinDir) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set: run `make e2e` or `make test`\n", controlplane.EnvBinDir)
		os.Exit(1)
	}
	// Each manager logs through its test's logger (kube.Options.Logger); what
	// controller-runtime logs globally cannot name a test, which may have ended.
	ctrl.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{}))
	os.Exit(m.Run())
}

// TestDubboServiceEntry is the main loop, on the secure path of a stock Istio: a
// ServiceEntry applied gets its EnvoyFilters, a sidecar's listener carries the Dubbo
// filter, and deleting it removes them.
func TestDubboServiceEntry(t *testing.T) {
	e := startSecure(t)
	d := dubboService{name: "dubbo-demo", host: "org.apache.dubbo.samples.basic.api.demoservice", vip: "240.240.0.10"}
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)
	e.waitListenerFilter(t, d.vip+"_20880", dubboFilter)

	e.deleteDubbo(t, d)
	e.waitDubboFilters(t, d, false)
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

// TestPrivateKubernetesService: istiod does not show the controller a Kubernetes
// Service exported to its own namespace only (the controller's scope is the root
// namespace); the controller still configures it, for that namespace's sidecars
// only, from its own cache.
func TestPrivateKubernetesService(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cache-private", Namespace: appNS,
			Annotations: map[string]string{"networking.istio.io/exportTo": "."}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "cache"},
			Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
	created, err := e.kube.CoreV1().Services(appNS).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host := "cache-private." + appNS + ".svc.cluster.local"
	outbound := "aeraki-outbound-" + host + "-6379"
	e.waitEnvoyFilter(t, appNS, outbound, true)
	e.waitListenerFilter(t, created.Spec.ClusterIP+"_6379", redisFilter)
	if _, err := e.istio.NetworkingV1alpha3().EnvoyFilters(rootNS).Get(ctx, outbound, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the private Service's outbound EnvoyFilter in the root namespace, which reaches every sidecar: %v", err)
	}

	if err := e.kube.CoreV1().Services(appNS).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEnvoyFilter(t, appNS, outbound, false)
}

// dubboService is a ServiceEntry in the application namespace with one tcp-dubbo port
// on a VIP, selecting workloads of its own (app: <name>): it gets an outbound
// EnvoyFilter in the root namespace and an inbound one in its own. (Services of the
// same workloads and port share one inbound EnvoyFilter, the oldest one's.)
type dubboService struct {
	name, host, vip string
	// iface is the Dubbo interface; DemoService's when empty.
	iface string
}

func (d dubboService) object() *clientnetworking.ServiceEntry {
	se := &clientnetworking.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: appNS,
			Annotations: map[string]string{"interface": cmp.Or(d.iface, "org.apache.dubbo.samples.basic.api.DemoService")}},
	}
	se.Spec.Hosts = []string{d.host}
	se.Spec.Addresses = []string{d.vip}
	se.Spec.Ports = []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}}
	se.Spec.Resolution = networking.ServiceEntry_STATIC
	se.Spec.Location = networking.ServiceEntry_MESH_INTERNAL
	se.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": d.name}}
	return se
}

// filters returns the keys of the EnvoyFilters the service gets: outbound, then inbound.
func (d dubboService) filters() []types.NamespacedName {
	return []types.NamespacedName{
		{Namespace: rootNS, Name: "aeraki-outbound-" + d.host + "-20880"},
		{Namespace: appNS, Name: "aeraki-inbound-" + d.host + "-20880"},
	}
}

func (d dubboService) outbound() types.NamespacedName { return d.filters()[0] }

func (e *env) createDubbo(t *testing.T, d dubboService) {
	t.Helper()
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).Create(t.Context(), d.object(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ServiceEntry %s: %v", d.name, err)
	}
}

func (e *env) deleteDubbo(t *testing.T, d dubboService) {
	t.Helper()
	if err := e.istio.NetworkingV1().ServiceEntries(appNS).Delete(t.Context(), d.name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting ServiceEntry %s: %v", d.name, err)
	}
}

// sharedFilter is the client filter of port 20880 when it is shared.
var sharedFilter = types.NamespacedName{Namespace: rootNS, Name: "aeraki-shared-dubbo-20880"}

// waitDubboFilters waits until both EnvoyFilters of the service exist (or are gone).
// Shared, they are the port's client filter and the service's inbound one; the
// port's filter stays while other services have the port.
func (e *env) waitDubboFilters(t *testing.T, d dubboService, exist bool) {
	t.Helper()
	keys := d.filters()
	if e.shared {
		e.waitEnvoyFilter(t, keys[0].Namespace, keys[0].Name, false)
		keys[0] = sharedFilter
		if !exist {
			keys = keys[1:]
		}
	}
	for _, key := range keys {
		e.waitEnvoyFilter(t, key.Namespace, key.Name, exist)
	}
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

// istiod pushes no change of a ServiceEntry's annotations alone; the controller takes
// them from the apiserver, so renaming the Dubbo interface takes effect at once.
func TestServiceEntryAnnotationChange(t *testing.T) {
	e := start(t)
	d := dubboService{name: "renamed", host: "renamed.dubbo.example", vip: "240.240.0.90"}
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)
	// istiod has pushed the EnvoyFilters to sidecars: its pushes caused by our own
	// writes are over, and none would carry the annotation below by chance.
	e.waitListenerFilter(t, d.vip+"_20880", dubboFilter)

	ses := e.istio.NetworkingV1().ServiceEntries(appNS)
	se, err := ses.Get(t.Context(), d.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	se.Annotations["interface"] = "org.example.Renamed"
	if _, err := ses.Update(t.Context(), se, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The clients' routes name the interface; the server side accepts every one.
	e.waitSpec(t, d.outbound(), "", func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool {
		return strings.Contains(specYAML(t, ef), "org.example.Renamed")
	})
}
