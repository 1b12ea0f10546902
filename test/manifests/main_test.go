// Package manifests checks what users install and run: every manifest in k8s/ and demo/
// against a real kube-apiserver, the RBAC of k8s/aeraki.yaml against what the
// controller does, the image's build command and the binary it builds, and the shell
// scripts.
package manifests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	// installFile is the install manifest, relative to the repository root.
	installFile = "k8s/aeraki.yaml"
	// installNamespace is the namespace aeraki.yaml installs into: Istio's root
	// namespace, whose identities are the only ones istiod serves its config to through
	// the "api" generator. Istio creates it; aeraki.yaml does not.
	installNamespace = "istio-system"
	// fieldOwner is the field manager of what these tests apply.
	fieldOwner = "aeraki-manifests-test"
	timeout    = 60 * time.Second
)

var (
	// apiserver is a real etcd and kube-apiserver (envtest) with Istio's CRDs and ours,
	// RBAC authorization, and the service IP range of a kubeadm cluster (the demos name
	// ClusterIPs in it); the first test that needs it starts it.
	apiserver = controlplane.Envtest{Configure: configureAPIServer}
	// chartAPIServer is another such apiserver, for the chart installed with other
	// values (TestChart): its cluster-wide objects have the names of k8s/aeraki.yaml's.
	chartAPIServer = controlplane.Envtest{Configure: configureAPIServer}
	// repoRoot is the repository's top directory.
	repoRoot string
)

// configureAPIServer sets the apiserver's flags the tests depend on.
func configureAPIServer(env *envtest.Environment) {
	flags := env.ControlPlane.GetAPIServer().Configure()
	// envtest defaults to RBAC today; the RBAC test depends on it, so say it.
	flags.Set("authorization-mode", "RBAC")
	flags.Set("service-cluster-ip-range", "10.96.0.0/12")
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	var err error
	repoRoot, err = filepath.Abs(filepath.Join("..", ".."))
	if err == nil {
		_, err = os.Stat(filepath.Join(repoRoot, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the repository root: %v\n", err)
		os.Exit(1)
	}
	code := apiserver.Run(m)
	if err := chartAPIServer.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the chart's kube-apiserver: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// document is one YAML document of a manifest file.
type document struct {
	file  string // relative to the repository root
	index int    // 0-based among the file's non-empty documents
	obj   *unstructured.Unstructured
}

func (d document) String() string {
	ns := d.obj.GetNamespace()
	if ns != "" {
		ns += "/"
	}
	return fmt.Sprintf("%s#%d %s %s%s", d.file, d.index, d.obj.GetKind(), ns, d.obj.GetName())
}

// readDocuments decodes every non-empty document of a multi-document YAML file,
// strictly (a duplicated key is an error), and requires apiVersion, kind and name.
func readDocuments(rel string) ([]document, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		return nil, err
	}
	return parseDocuments(rel, data)
}

// parseDocuments decodes the documents of data as readDocuments does; rel names
// where they come from.
func parseDocuments(rel string, data []byte) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []document
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", rel, len(out), err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments or an empty document
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", rel, len(out), err)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s, document %d: %s without metadata.name", rel, len(out), obj.GetKind())
		}
		out = append(out, document{file: rel, index: len(out), obj: obj})
	}
}

// warnings collects the apiserver's warnings (deprecated APIs, Pod Security).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// take returns the warnings since the last call.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// newClient returns a client for cfg (the admin when nil) whose apiserver warnings
// land in the returned collector.
func newClient(t *testing.T, cfg *rest.Config) (client.Client, *warnings) {
	t.Helper()
	if cfg == nil {
		cfg = apiserver.RestConfig(t)
	}
	cfg = rest.CopyConfig(cfg)
	w := &warnings{}
	cfg.WarningHandler = w
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

// apply applies obj server-side (like `kubectl apply --server-side`), for real or as
// a dry run. Apply requests are always validated strictly: an unknown field fails.
func apply(ctx context.Context, c client.Client, obj *unstructured.Unstructured, dryRun bool) error {
	opts := []client.ApplyOption{client.ForceOwnership, client.FieldOwner(fieldOwner)}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), opts...)
}

// ensureNamespace creates a namespace unless it exists. The install namespaces (of
// k8s/aeraki.yaml and of the chart with other values) get the labels of the
// "restricted" Pod Security Standard: istio-system need not enforce it, but aeraki's
// pod meets it, and the apiserver then says so (a pod template that breaks it draws a
// warning, which fails the tests that apply it).
func ensureNamespace(ctx context.Context, c client.Client, name string) error {
	if name == installNamespace || name == chartNamespace {
		ns := &unstructured.Unstructured{}
		ns.SetAPIVersion("v1")
		ns.SetKind("Namespace")
		ns.SetName(name)
		ns.SetLabels(map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		})
		return apply(ctx, c, ns, false)
	}
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

var (
	installOnce sync.Once
	installErr  error
)

// installation is aeraki as one set of documents installs it into one apiserver:
// k8s/aeraki.yaml into envtest's (manifestInstall), or the chart with other values
// into an apiserver of its own (chartInstall).
type installation struct {
	docs []document
	// namespace is aeraki's: Istio's root namespace, where its ServiceAccount is.
	namespace string
	// admin returns the apiserver's admin config, starting it if need be.
	admin func(t testing.TB) *rest.Config
	// once installs it, the first time a test asks (install).
	once *sync.Once
	err  *error
}

// manifestInstall is k8s/aeraki.yaml on envtest's apiserver.
func manifestInstall(t *testing.T) installation {
	t.Helper()
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	return installation{docs: docs, namespace: installNamespace, admin: apiserver.RestConfig, once: &installOnce, err: &installErr}
}

// install applies the documents for real, once per test binary, and waits for their
// bindings to take effect. There is no kube-controller-manager: the Deployment gets
// no pods.
func (in installation) install(t *testing.T) {
	t.Helper()
	in.once.Do(func() {
		admin := in.admin(t)
		if *in.err = installDocuments(t, admin, in.docs, in.namespace); *in.err == nil {
			*in.err = waitGranted(serviceAccountConfigFor(t, admin, in.namespace), in.namespace)
		}
	})
	if *in.err != nil {
		t.Fatal(*in.err)
	}
}

// deployment returns the installation's Deployment.
func (in installation) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	return deploymentOf(t, in.docs)
}

// installAeraki applies k8s/aeraki.yaml for real to envtest's apiserver, once per test
// binary, and waits for its bindings to take effect.
func installAeraki(t *testing.T) {
	t.Helper()
	manifestInstall(t).install(t)
}

// installManifest applies k8s/aeraki.yaml with the admin config cfg (envtest's when
// nil), after creating its namespace as Istio would have (the file does not create it;
// a Namespace document would still be applied first).
func installManifest(t *testing.T, cfg *rest.Config) error {
	t.Helper()
	docs, err := readDocuments(installFile)
	if err != nil {
		return err
	}
	return installDocuments(t, cfg, docs, installNamespace)
}

// installDocuments applies docs with the admin config cfg (envtest's when nil),
// after creating aeraki's namespace as Istio would have.
func installDocuments(t *testing.T, cfg *rest.Config, docs []document, namespace string) error {
	t.Helper()
	c, _ := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := ensureNamespace(ctx, c, namespace); err != nil {
		return fmt.Errorf("creating the namespace %s: %w", namespace, err)
	}
	for _, pass := range []func(document) bool{isNamespace, func(d document) bool { return !isNamespace(d) }} {
		for _, d := range docs {
			if !pass(d) {
				continue
			}
			if err := apply(ctx, c, d.obj, false); err != nil {
				return fmt.Errorf("applying %s: %w", d, err)
			}
		}
	}
	return nil
}

func isNamespace(d document) bool {
	return d.obj.GetAPIVersion() == "v1" && d.obj.GetKind() == "Namespace"
}

// readFile returns a repository file as a string.
func readFile(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
