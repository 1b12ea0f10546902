// Package kube builds the controller-runtime manager: leader election, the caches of
// the Kubernetes objects we read, metrics and probes.
package kube

import (
	"fmt"
	"maps"
	"time"

	"github.com/go-logr/logr"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/model"
)

// Options configure the manager.
type Options struct {
	LeaderElection          bool
	LeaderElectionID        string
	LeaderElectionNamespace string
	// LeaseDuration and RenewDeadline tune failover; zero keeps controller-runtime's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	MetricsAddr                               string
	ProbeAddr                                 string
	// SeveralManagersPerProcess lets tests run more than one manager in a process:
	// controller-runtime otherwise refuses a second controller of the same name.
	SeveralManagersPerProcess bool
	// Logger receives the manager's and its controllers' logs; the zero value means
	// controller-runtime's global logger (ctrl.SetLogger).
	Logger logr.Logger
}

// NewScheme registers the Kubernetes, Istio and Aeraki types we read and write.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := clientnetworking.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := redisv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// NewManager returns a manager whose cache holds only our EnvoyFilters (by label), the
// Kubernetes Services that istiod's synthetic ServiceEntries stand for and the Redis
// objects. No Secrets: the controller reads those it is granted, one at a time.
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	ours := labels.SelectorFromSet(labels.Set{model.ManagedByLabel: model.ManagedByValue})
	mo := ctrl.Options{
		Scheme:                        scheme,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&clientnetworking.EnvoyFilter{}: {Label: ours},
		}},
	}
	if opts.Logger.GetSink() != nil {
		mo.Logger = opts.Logger
	}
	if opts.SeveralManagersPerProcess {
		mo.Controller.SkipNameValidation = &opts.SeveralManagersPerProcess
	}
	if opts.LeaseDuration > 0 {
		mo.LeaseDuration = &opts.LeaseDuration
	}
	if opts.RenewDeadline > 0 {
		mo.RenewDeadline = &opts.RenewDeadline
	}
	if opts.RetryPeriod > 0 {
		mo.RetryPeriod = &opts.RetryPeriod
	}
	mgr, err := ctrl.NewManager(cfg, mo)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	return mgr, nil
}

// ServiceChangeMatters reports whether a Service change can change what is generated:
// a supported protocol port before or after, and the ports or annotations changed.
func ServiceChangeMatters(oldSvc, newSvc *corev1.Service) bool {
	if !HasSupportedPort(oldSvc) && !HasSupportedPort(newSvc) {
		return false
	}
	if oldSvc == nil || newSvc == nil {
		return true
	}
	// Selector and ClusterIP too: of a Service that istiod does not show the
	// controller, the controller's own copy is all it has (see bootstrap's source).
	return !equality.Semantic.DeepEqual(oldSvc.Spec.Ports, newSvc.Spec.Ports) || !maps.Equal(oldSvc.Annotations, newSvc.Annotations) ||
		!maps.Equal(oldSvc.Spec.Selector, newSvc.Spec.Selector) || oldSvc.Spec.ClusterIP != newSvc.Spec.ClusterIP
}

// HasSupportedPort reports whether a Kubernetes Service has a port whose name says a
// supported protocol.
func HasSupportedPort(svc *corev1.Service) bool {
	if svc == nil {
		return false
	}
	for _, p := range svc.Spec.Ports {
		if model.ParsePortName(p.Name).Supported() {
			return true
		}
	}
	return false
}
