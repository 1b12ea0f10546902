package manifests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const (
	// prometheusHelper adds aeraki's scrape job to the addon's configuration.
	prometheusHelper = "demo/prometheus-with-aeraki.sh"
	installDemo      = "demo/install-demo.sh"
	// saTokenFile is where the kubelet mounts a pod's ServiceAccount token for the API.
	saTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// scrapeJob is what TestDemoPrometheus reads of a Prometheus scrape job.
type scrapeJob struct {
	JobName       string `json:"job_name"`
	Scheme        string `json:"scheme"`
	Authorization *struct {
		Type            string `json:"type"`
		CredentialsFile string `json:"credentials_file"`
	} `json:"authorization"`
	BearerTokenFile     string `json:"bearer_token_file"`
	KubernetesSDConfigs []struct {
		Role       string `json:"role"`
		Namespaces struct {
			Names []string `json:"names"`
		} `json:"namespaces"`
	} `json:"kubernetes_sd_configs"`
	RelabelConfigs []struct {
		Action       string   `json:"action"`
		Regex        string   `json:"regex"`
		SourceLabels []string `json:"source_labels"`
	} `json:"relabel_configs"`
}

// TestDemoPrometheus checks that the demo's Prometheus, Istio's addon as
// install-demo.sh applies it, scrapes aeraki's metrics as k8s/aeraki.yaml serves
// them: the helper adds one job that keeps exactly the endpoints of the metrics
// Service's port, over HTTPS, with the token of Prometheus's ServiceAccount, which
// install-demo.sh binds to aeraki-metrics-reader; the rest of the addon is unchanged.
// The addon is the one of the Istio module this repository builds with.
func TestDemoPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil {
		t.Fatalf("finding the istio.io/istio module: %v", err)
	}
	addon, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "samples", "addons", "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, prometheusHelper))
	cmd.Stdin = bytes.NewReader(addon)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	patched, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", prometheusHelper, err, stderr.String())
	}
	before, after := addonDocuments(t, addon), addonDocuments(t, patched)
	if len(before) != len(after) {
		t.Fatalf("%d documents in, %d out", len(before), len(after))
	}

	var config, oldConfig string
	var sa, saNamespace string
	for i, d := range after {
		switch d.kind {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict(d.raw, &cm); err != nil {
				t.Fatal(err)
			}
			if _, ok := cm.Data["prometheus.yml"]; ok {
				config = cm.Data["prometheus.yml"]
				var old corev1.ConfigMap
				if err := yaml.Unmarshal(before[i].raw, &old); err != nil {
					t.Fatal(err)
				}
				oldConfig = old.Data["prometheus.yml"]
				continue
			}
		case "Deployment":
			var dep appsv1.Deployment
			if err := yaml.Unmarshal(d.raw, &dep); err != nil {
				t.Fatal(err)
			}
			sa, saNamespace = dep.Spec.Template.Spec.ServiceAccountName, dep.Namespace
		}
		if !bytes.Equal(d.raw, before[i].raw) {
			t.Errorf("document %d (%s) changed: only the configuration may", i, d.kind)
		}
	}
	if config == "" || sa == "" {
		t.Fatalf("the addon has no ConfigMap with prometheus.yml or no Deployment with a ServiceAccount")
	}

	var parsed, oldParsed struct {
		ScrapeConfigs []scrapeJob `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(config), &parsed); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if err := yaml.Unmarshal([]byte(oldConfig), &oldParsed); err != nil {
		t.Fatalf("the addon's prometheus.yml: %v", err)
	}
	if len(parsed.ScrapeConfigs) != len(oldParsed.ScrapeConfigs)+1 {
		t.Errorf("%d scrape jobs, want the addon's %d and one more", len(parsed.ScrapeConfigs), len(oldParsed.ScrapeConfigs))
	}
	var jobs []string
	var aeraki *scrapeJob
	for i, j := range parsed.ScrapeConfigs {
		if slices.Contains(jobs, j.JobName) {
			t.Errorf("two scrape jobs named %q: Prometheus refuses the configuration", j.JobName)
		}
		jobs = append(jobs, j.JobName)
		if j.JobName == "aeraki" {
			aeraki = &parsed.ScrapeConfigs[i]
		}
	}
	if aeraki == nil {
		t.Fatalf("no scrape job aeraki among %q", jobs)
	}
	if aeraki.Scheme != "https" {
		t.Errorf("scheme %q, want https", aeraki.Scheme)
	}
	if aeraki.Authorization == nil || aeraki.Authorization.CredentialsFile != saTokenFile ||
		(aeraki.Authorization.Type != "" && aeraki.Authorization.Type != "Bearer") {
		t.Errorf("authorization %+v, want the bearer token of Prometheus's ServiceAccount, %s", aeraki.Authorization, saTokenFile)
	}

	// The Service and port of k8s/aeraki.yaml, as endpoints discovery labels them.
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	var metrics corev1.Service
	for _, d := range docs {
		if d.obj.GetKind() == "Service" && d.obj.GetName() == "aeraki-metrics" {
			fromUnstructured(t, d, &metrics)
		}
	}
	if len(metrics.Spec.Ports) != 1 {
		t.Fatalf("the Service aeraki-metrics has ports %+v, want one", metrics.Spec.Ports)
	}
	sd := aeraki.KubernetesSDConfigs
	if len(sd) != 1 || sd[0].Role != "endpoints" || !slices.Equal(sd[0].Namespaces.Names, []string{metrics.Namespace}) {
		t.Errorf("discovery %+v, want the endpoints of namespace %s", sd, metrics.Namespace)
	}
	keeps := 0
	for _, r := range aeraki.RelabelConfigs {
		if r.Action != "keep" {
			continue
		}
		keeps++
		// Prometheus anchors relabelling regexes and joins the labels with ";".
		re, err := regexp.Compile("^(?:" + r.Regex + ")$")
		if err != nil {
			t.Fatalf("relabel regex %q: %v", r.Regex, err)
		}
		want := []string{"__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"}
		ours := metrics.Name + ";" + metrics.Spec.Ports[0].Name
		if !slices.Equal(r.SourceLabels, want) || !re.MatchString(ours) ||
			re.MatchString("aeraki;grpc-routes") || re.MatchString(metrics.Name+";http-metrics") {
			t.Errorf("keep rule %q on %q: want one on %q that keeps exactly %q", r.Regex, r.SourceLabels, want, ours)
		}
	}
	if keeps != 1 {
		t.Errorf("%d keep rules, want one for the metrics Service's port", keeps)
	}

	script := readFile(t, installDemo)
	for _, want := range []string{
		filepath.Base(prometheusHelper) + `" <"$addons/prometheus.yaml"`,
		"--clusterrole=aeraki-metrics-reader",
		"--serviceaccount=" + saNamespace + ":" + sa,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("%s does not say %q", installDemo, want)
		}
	}
	if strings.Contains(script, "prometheus.io/scrape") {
		t.Errorf("%s still annotates a Service for the addon's plain, token-less scrape", installDemo)
	}
	if !strings.Contains(readFile(t, "demo/uninstall-demo.sh"), "clusterrolebinding aeraki-metrics-reader") {
		t.Error("demo/uninstall-demo.sh leaves the ClusterRoleBinding aeraki-metrics-reader behind")
	}
}

type addonDocument struct {
	kind string
	raw  []byte
}

// addonDocuments splits a multi-document manifest, keeping each document's bytes.
func addonDocuments(t *testing.T, data []byte) []addonDocument {
	t.Helper()
	var out []addonDocument
	for _, raw := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(raw), &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "" {
			out = append(out, addonDocument{kind: meta.Kind, raw: []byte(raw)})
		}
	}
	return out
}
