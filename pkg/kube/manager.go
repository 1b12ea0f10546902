// Package kube builds the controller-runtime manager: leader election, the caches of
// the Kubernetes objects we read, metrics and probes.
package kube

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/kubeobj"
)

// Options configure the manager.
type Options struct {
	LeaderElection          bool
	LeaderElectionID        string
	LeaderElectionNamespace string
	// LeaseDuration and RenewDeadline tune failover; zero keeps controller-runtime's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	MetricsAddr                               string
	// InsecureMetrics serves metrics over plain HTTP to anyone who asks: for a local
	// run on loopback only. Otherwise they are served over HTTPS to clients whose
	// bearer token the apiserver accepts (TokenReview) and who may get /metrics
	// (SubjectAccessReview).
	InsecureMetrics bool
	// MetricsCertDir holds the metrics server's tls.crt and tls.key, reloaded when
	// they change; empty means a self-signed certificate made at start.
	MetricsCertDir string
	ProbeAddr      string
	// PprofAddr serves Go's /debug/pprof profiles; "" or "0" (the default) serves
	// none. Profiles show the process's memory and stacks: bind it to loopback.
	PprofAddr string
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
	if err := clientnetworkingv1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := redisv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// NewManager returns a manager whose cache holds only our EnvoyFilters (by label), the
// Kubernetes Services that istiod's synthetic ServiceEntries stand for, ServiceEntries
// without their specs (TrimServiceEntry), the EndpointSlices of headless Services
// (trimmed to their ready addresses) and the Redis objects. No Secrets: the
// controller reads those it is granted, one at a time.
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	metrics, err := metricsOptions(opts)
	if err != nil {
		return nil, err
	}
	ours := labels.SelectorFromSet(model.ManagedLabels())
	// Kubernetes' EndpointSlice controller labels the slices of headless Services
	// (and takes the label off when the Service gets a cluster IP).
	headless, err := labels.NewRequirement(corev1.IsHeadlessService, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	mo := ctrl.Options{
		Scheme:                        scheme,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metrics,
		HealthProbeBindAddress:        opts.ProbeAddr,
		PprofBindAddress:              opts.PprofAddr,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&clientnetworking.EnvoyFilter{}:    {Label: ours, Transform: TrimEnvoyFilter},
			&clientnetworkingv1.ServiceEntry{}: {Transform: TrimServiceEntry},
			// Only headless Services' endpoints are read (their clients' listeners
			// are per endpoint), and of those only the ready addresses.
			&discoveryv1.EndpointSlice{}: {Label: labels.NewSelector().Add(*headless), Transform: kubeobj.TrimEndpointSlice},
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

// Names of the metrics server's certificate and key in Options.MetricsCertDir, as a
// kubernetes.io/tls Secret mounts them.
const (
	MetricsCertFile = "tls.crt"
	MetricsKeyFile  = "tls.key"
)

// metricsOptions are the metrics server's: HTTPS with authentication and
// authorization by the apiserver unless opts.InsecureMetrics.
func metricsOptions(opts Options) (metricsserver.Options, error) {
	mo := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if opts.InsecureMetrics || opts.MetricsAddr == "0" {
		return mo, nil
	}
	mo.SecureServing = true
	mo.FilterProvider = filters.WithAuthenticationAndAuthorization
	// HTTP/2 only adds exposure to its stream-reset floods; a scraper needs HTTP/1.1.
	mo.TLSOpts = []func(*tls.Config){func(c *tls.Config) {
		c.NextProtos = []string{"http/1.1"}
		c.MinVersion = tls.VersionTLS12
	}}
	if opts.MetricsCertDir != "" {
		// controller-runtime falls back to a self-signed certificate when a file is
		// missing: a mistyped mount would go unnoticed, so refuse to start instead.
		for _, name := range []string{MetricsCertFile, MetricsKeyFile} {
			if _, err := os.Stat(filepath.Join(opts.MetricsCertDir, name)); err != nil {
				return mo, fmt.Errorf("metrics certificate directory: %w", err)
			}
		}
		mo.CertDir, mo.CertName, mo.KeyName = opts.MetricsCertDir, MetricsCertFile, MetricsKeyFile
		return mo, nil
	}
	// Made here rather than left to controller-runtime, which would first look for
	// a certificate in a fixed directory under the system's temporary directory.
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return mo, fmt.Errorf("self-signed metrics certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return mo, fmt.Errorf("self-signed metrics certificate: %w", err)
	}
	mo.TLSOpts = append(mo.TLSOpts, func(c *tls.Config) {
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
	})
	return mo, nil
}

// TrimServiceEntry keeps of a ServiceEntry what istiod does not send, or sends late
// (see model.ServiceEntryState): its metadata, and its status addresses. The spec
// comes from istiod, and the cache holds every ServiceEntry of the cluster, so the
// copies of the spec in the metadata go too: managed fields, and kubectl's
// last-applied-configuration annotation. Anything else passes as it is.
func TrimServiceEntry(obj any) (any, error) {
	se, ok := obj.(*clientnetworkingv1.ServiceEntry)
	if !ok {
		return obj, nil
	}
	// The decoded object is the informer's alone: sharing its maps costs nothing.
	out := &clientnetworkingv1.ServiceEntry{TypeMeta: se.TypeMeta, ObjectMeta: se.ObjectMeta}
	out.ManagedFields = nil
	if _, ok := out.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		out.Annotations = maps.Clone(out.Annotations)
		delete(out.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	out.Status.Addresses = se.Status.Addresses
	return out, nil
}

// TrimEnvoyFilter is the informer cache's transform of our EnvoyFilters: it keeps
// the metadata the controller reads and a digest of the spec in place of the spec
// (see model.SpecDigestAnnotation; apply reads it). Managed fields go too.
func TrimEnvoyFilter(obj any) (any, error) {
	ef, ok := obj.(*clientnetworking.EnvoyFilter)
	if !ok {
		return obj, nil
	}
	out := &clientnetworking.EnvoyFilter{TypeMeta: ef.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: ef.Name, Namespace: ef.Namespace, UID: ef.UID, ResourceVersion: ef.ResourceVersion, Generation: ef.Generation,
		CreationTimestamp: ef.CreationTimestamp, DeletionTimestamp: ef.DeletionTimestamp, Labels: ef.Labels,
		Annotations: maps.Clone(ef.Annotations),
	}}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[model.SpecDigestAnnotation] = model.SpecDigest(&ef.Spec)
	return out, nil
}

// ServiceEntryChangeMatters reports whether a change of the apiserver's copy of a
// ServiceEntry can change what is generated, beyond what istiod tells: its
// annotations or labels (istiod pushes no change of annotations alone), or its
// status addresses (istiod sends no status). Nil is an object that is not there.
func ServiceEntryChangeMatters(oldSE, newSE *clientnetworkingv1.ServiceEntry) bool {
	if oldSE == nil || newSE == nil {
		// A new object with addresses already: istiod's copy may have come first.
		other := cmp.Or(oldSE, newSE)
		return other != nil && len(other.Status.Addresses) > 0
	}
	return !maps.Equal(oldSE.Annotations, newSE.Annotations) || !maps.Equal(oldSE.Labels, newSE.Labels) ||
		!slices.Equal(model.StatusAddresses(&oldSE.Status), model.StatusAddresses(&newSE.Status))
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

// EndpointSliceChangeMatters reports whether an EndpointSlice change can change what
// is generated: the Service it belongs to, or its ready addresses (each a listener
// of the Service's clients). Nil is a slice that is not there.
func EndpointSliceChangeMatters(oldEPS, newEPS *discoveryv1.EndpointSlice) bool {
	if oldEPS == nil || newEPS == nil {
		return true
	}
	return oldEPS.Labels[discoveryv1.LabelServiceName] != newEPS.Labels[discoveryv1.LabelServiceName] ||
		!slices.Equal(kubeobj.Endpoints([]discoveryv1.EndpointSlice{*oldEPS}), kubeobj.Endpoints([]discoveryv1.EndpointSlice{*newEPS}))
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
