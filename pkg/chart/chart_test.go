package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory, from this package's.
var repoRoot = filepath.Join("..", "..")

// otherValues returns the values of OtherValuesFile.
func otherValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := ReadValues(filepath.Join(repoRoot, OtherValuesFile))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func chartDir() string { return filepath.Join(repoRoot, Dir) }

// TestLint: Helm's linter, strict, finds nothing in the chart with its defaults, with
// OtherValuesFile, and with every optional part turned off.
func TestLint(t *testing.T) {
	off := map[string]any{
		"replicas":            1,
		"routeServer":         map[string]any{"enabled": false},
		"metrics":             map[string]any{"secure": false},
		"networkPolicy":       map[string]any{"enabled": false},
		"admissionPolicy":     map[string]any{"enabled": false},
		"podDisruptionBudget": map[string]any{"enabled": false},
	}
	for name, tc := range map[string]struct {
		namespace string
		values    map[string]any
	}{
		"defaults":     {"istio-system", nil},
		"other values": {"mesh-root", otherValues(t)},
		"parts off":    {"istio-system", off},
	} {
		if err := Lint(chartDir(), tc.namespace, tc.values); err != nil {
			t.Errorf("%s: helm lint: %v", name, err)
		}
	}
}

// TestLintFindsErrors: the linter is really run, with the chart's values schema: a
// misspelt or mistyped value fails it. Rendering refuses what the templates refuse.
func TestLintFindsErrors(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"a misspelt value":    {"replica": 3},
		"a mistyped value":    {"replicas": "three"},
		"not a duration":      {"debounce": map[string]any{"quiet": "soon"}},
		"an address, no port": {"istiod": map[string]any{"address": "istiod.istio-system.svc"}},
	} {
		if err := Lint(chartDir(), "istio-system", values); err == nil {
			t.Errorf("%s %v: helm lint finds nothing", name, values)
		}
	}
	_, err := Render(chartDir(), map[string]any{"metrics": map[string]any{"secure": false, "certSecret": "tls"}})
	if err == nil || !strings.Contains(err.Error(), "metrics.certSecret needs metrics.secure") {
		t.Errorf("a metrics certificate without HTTPS: %v, want the chart's refusal", err)
	}
}

// TestInstallManifestIsRendered: k8s/aeraki.yaml is the chart rendered with its
// defaults (`make generate` writes it; `make check-generated` catches drift too).
func TestInstallManifestIsRendered(t *testing.T) {
	want, err := InstallManifest(chartDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(repoRoot, InstallFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the chart rendered with its defaults: run `make generate`", InstallFile)
	}
}

// TestChartCRDsAreGenerated: the chart's CRDs are exactly k8s/crds, which
// `make generate` writes from pkg/apis and copies into the chart.
func TestChartCRDsAreGenerated(t *testing.T) {
	want, err := filepath.Glob(filepath.Join(repoRoot, "k8s", "crds", "*.yaml"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no CRDs in k8s/crds: %v", err)
	}
	got, err := filepath.Glob(filepath.Join(chartDir(), "crds", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("the chart has CRD files %q, want copies of %q: run `make generate`", got, want)
	}
	for _, f := range want {
		a, errA := os.ReadFile(f)
		b, errB := os.ReadFile(filepath.Join(chartDir(), "crds", filepath.Base(f)))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("the chart's crds/%s differs from k8s/crds (%v, %v): run `make generate`", filepath.Base(f), errA, errB)
		}
	}
}

// TestRenderOtherValues: what each value changes shows up where it must. The
// apiserver checks in test/manifests take the same output further.
func TestRenderOtherValues(t *testing.T) {
	r, err := Render(chartDir(), otherValues(t))
	if err != nil {
		t.Fatal(err)
	}
	out := string(r.Objects)
	for _, want := range []string{
		"--istiod-addr=istiod-canary.mesh-root.svc:15012",
		"--root-namespace=mesh-root",
		"replicas: 3",
		"image: example/aeraki:v1.2.3",
		"imagePullPolicy: Always",
		"--log-level=debug",
		"--debounce-quiet=1s", "--debounce-max=20s", "--settle=2s",
		"--writers=4",
		"--kafka-contrib-filter=true",
		"--metrics-addr=:9443",
		"--metrics-cert-dir=/var/run/secrets/metrics",
		"secretName: aeraki-metrics-tls",
		"--proxy-status-interval=10s",
		"--contain-rejections=false",
		"--route-server-addr=:15081", "--route-server-port=15081",
		"--trust-domain=example.org",
		"--domain-suffix=example.local",
		"minAvailable: 2",
		"kubernetes.io/metadata.name: mesh-root",
		"istio.io/rev: canary",
		"request.userInfo.username == 'system:serviceaccount:mesh-root:aeraki'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the chart rendered with other values lacks %q", want)
		}
	}
	if strings.Contains(out, "istio-system") {
		t.Error("the chart rendered with rootNamespace mesh-root still names istio-system")
	}
	if !bytes.Contains(r.CRDs, []byte("kind: CustomResourceDefinition")) {
		t.Error("no CRDs rendered")
	}
}

// TestIstiodAddress: an explicit address wins over a revision; the NetworkPolicy
// follows a Service name's namespace, and opens the port to any address otherwise.
func TestIstiodAddress(t *testing.T) {
	for _, tc := range []struct {
		istiod  map[string]any
		want    []string
		wantNot []string
	}{
		{map[string]any{"revision": "canary", "address": "istiod-1-31.istio-control.svc:15012"},
			[]string{"--istiod-addr=istiod-1-31.istio-control.svc:15012", "kubernetes.io/metadata.name: istio-control", "istio.io/rev: canary"}, nil},
		{map[string]any{"address": "10.0.0.7:15443", "serverName": "istiod.istio-system.svc"},
			[]string{"--istiod-addr=10.0.0.7:15443", "--istiod-server-name=istiod.istio-system.svc", "- port: 15443"},
			[]string{"app: istiod"}},
	} {
		r, err := Render(chartDir(), map[string]any{"istiod": tc.istiod})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !bytes.Contains(r.Objects, []byte(w)) {
				t.Errorf("istiod %v: output lacks %q", tc.istiod, w)
			}
		}
		for _, w := range tc.wantNot {
			if bytes.Contains(r.Objects, []byte(w)) {
				t.Errorf("istiod %v: output has %q", tc.istiod, w)
			}
		}
	}
}
