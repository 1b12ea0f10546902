package manifests

import (
	"context"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// manifestDirs hold everything a user applies: the install manifest, the CRDs and the
// demos, present and future.
var manifestDirs = []string{"k8s", "demo"}

// manifestFiles returns every YAML file under manifestDirs, relative to the root.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range manifestDirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
				return nil
			}
			rel, err := filepath.Rel(repoRoot, path)
			files = append(files, filepath.ToSlash(rel))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Contains(files, installFile) {
		t.Fatalf("%s not found among %v", installFile, files)
	}
	return files
}

// TestManifestsAcceptedByAPIServer applies every document of every manifest with a
// server-side dry run, as `kubectl apply --server-side --dry-run=server` would: the
// apiserver validates it strictly (schema, unknown fields, admission including Pod
// Security) and stores nothing. A warning (a deprecated API, a pod template that breaks
// its namespace's Pod Security level) fails the test too. Namespaces the documents
// live in are created first, from their Namespace document when there is one.
func TestManifestsAcceptedByAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, warns := newClient(t, nil)
	var docs []document
	files := manifestFiles(t)
	for _, f := range files {
		d, err := readDocuments(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) == 0 {
			t.Errorf("%s holds no Kubernetes object", f)
		}
		docs = append(docs, d...)
	}
	check := func(d document) {
		t.Helper()
		if err := apply(ctx, c, d.obj, true); err != nil {
			t.Errorf("%s: rejected: %v", d, err)
		}
		if w := warns.take(); len(w) > 0 {
			t.Errorf("%s: warnings: %q", d, w)
		}
	}

	// Namespaces: first as new objects (dry run), then for real so that what lives in
	// them can be checked, with the labels their document gives them.
	namespaceDocs := map[string]document{}
	for _, d := range docs {
		if isNamespace(d) {
			check(d)
			namespaceDocs[d.obj.GetName()] = d
		}
	}
	for _, d := range docs {
		ns := d.obj.GetNamespace()
		if ns == "" {
			namespaced, err := c.IsObjectNamespaced(d.obj)
			if err != nil {
				t.Errorf("%s: %v", d, err)
				continue
			}
			if !namespaced {
				continue
			}
			d.obj.SetNamespace("default") // kubectl's namespace when none is given
			continue
		}
		var err error
		if nd, ok := namespaceDocs[ns]; ok {
			err = apply(ctx, c, nd.obj, false)
		} else {
			err = ensureNamespace(ctx, c, ns)
		}
		if err != nil {
			t.Fatalf("creating namespace %s for %s: %v", ns, d, err)
		}
	}
	for _, d := range docs {
		if !isNamespace(d) {
			check(d)
		}
	}
	t.Logf("%d documents in %d files checked", len(docs), len(files))
}

// TestInstallCRDsAreGenerated checks that the CRDs in k8s/aeraki.yaml are exactly the
// files in k8s/crds, which `make generate` writes there (and `make check-generated`
// catches when it was not run).
func TestInstallCRDsAreGenerated(t *testing.T) {
	text := readFile(t, installFile)
	const begin, end = "\n# BEGIN CRDs", "\n# END CRDs\n"
	b := strings.Index(text, begin)
	e := strings.Index(text, end)
	if b < 0 || e < b {
		t.Fatalf("%s: the lines %q and %q are missing or out of order", installFile, begin[1:], end[1:len(end)-1])
	}
	got := text[b+1 : e+1]
	got = got[strings.Index(got, "\n")+1:] // drop the BEGIN line
	files, err := filepath.Glob(filepath.Join(repoRoot, "k8s", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in k8s/crds: %v", err)
	}
	slices.Sort(files)
	var want strings.Builder
	for _, f := range files {
		rel, err := filepath.Rel(repoRoot, f)
		if err != nil {
			t.Fatal(err)
		}
		want.WriteString(readFile(t, rel))
	}
	if got != want.String() {
		t.Errorf("the CRDs in %s differ from k8s/crds/*.yaml: run `make generate`", installFile)
	}
}

// TestInstallManifest checks what k8s/aeraki.yaml promises beyond what the apiserver
// validates: the Deployment's flags, probes, ports and hardening, and RBAC without
// wildcards bound to aeraki's ServiceAccount.
func TestInstallManifest(t *testing.T) {
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	var (
		deploy       *appsv1.Deployment
		metrics      *corev1.Service
		namespaces   []string
		roles        []rbacv1.PolicyRule
		bindSubjects []rbacv1.Subject
		crds         int
	)
	for _, d := range docs {
		if ns := d.obj.GetNamespace(); ns != "" && ns != installNamespace {
			t.Errorf("%s: namespace %q, want %q", d, ns, installNamespace)
		}
		switch d.obj.GetKind() {
		case "Namespace":
			namespaces = append(namespaces, d.obj.GetName())
		case "CustomResourceDefinition":
			crds++
		case "Deployment":
			deploy = &appsv1.Deployment{}
			fromUnstructured(t, d, deploy)
		case "Service":
			metrics = &corev1.Service{}
			fromUnstructured(t, d, metrics)
		case "ClusterRole", "Role":
			var r rbacv1.ClusterRole // a Role has the same rules
			fromUnstructured(t, d, &r)
			roles = append(roles, r.Rules...)
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, d, &b)
			bindSubjects = append(bindSubjects, b.Subjects...)
		}
	}
	if !slices.Equal(namespaces, []string{installNamespace}) || crds != 2 || deploy == nil || metrics == nil {
		t.Fatalf("want the namespace %s, 2 CRDs, a Deployment and a Service; got namespaces %v, %d CRDs, Deployment %t, Service %t",
			installNamespace, namespaces, crds, deploy != nil, metrics != nil)
	}
	for _, r := range roles {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			if slices.Contains(list, "*") {
				t.Errorf("RBAC rule with a wildcard: %+v", r)
			}
		}
	}
	for _, s := range bindSubjects {
		if s.Kind != "ServiceAccount" || s.Name != "aeraki" || s.Namespace != installNamespace {
			t.Errorf("binding subject %+v, want ServiceAccount %s/aeraki", s, installNamespace)
		}
	}

	if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", deploy.Spec.Replicas)
	}
	pod := deploy.Spec.Template
	if pod.Annotations["sidecar.istio.io/inject"] != "false" {
		t.Errorf("pod annotation sidecar.istio.io/inject = %q, want \"false\"", pod.Annotations["sidecar.istio.io/inject"])
	}
	if pod.Spec.ServiceAccountName != "aeraki" {
		t.Errorf("serviceAccountName %q, want aeraki", pod.Spec.ServiceAccountName)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	if ctr.Image != "aeraki:latest" {
		t.Errorf("image %q, want the placeholder aeraki:latest", ctr.Image)
	}
	for _, want := range []string{
		"--leader-elect", "--istiod-addr=istiod.istio-system.svc:15010", "--root-namespace=istio-system",
		"--leader-election-namespace=$(POD_NAMESPACE)",
	} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("args %q lack %q", ctr.Args, want)
		}
	}
	if !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Error("POD_NAMESPACE does not come from the downward API (metadata.namespace)")
	}
	probePort, metricsPort := flagPort(t, ctr.Args, "probe-addr"), flagPort(t, ctr.Args, "metrics-addr")
	portOf := func(name string) int32 {
		for _, p := range ctr.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		t.Errorf("no container port named %q", name)
		return 0
	}
	for probe, path := range map[*corev1.Probe]string{ctr.LivenessProbe: "/healthz", ctr.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || portOf(probe.HTTPGet.Port.String()) != probePort {
			t.Errorf("want an HTTP probe %s on port %d (--probe-addr), got %+v", path, probePort, probe)
		}
	}
	if len(metrics.Spec.Ports) != 1 || portOf(metrics.Spec.Ports[0].TargetPort.String()) != metricsPort {
		t.Errorf("metrics Service ports %+v, want one targeting the container port %d (--metrics-addr)", metrics.Spec.Ports, metricsPort)
	}
	if !equalSelector(metrics.Spec.Selector, pod.Labels) {
		t.Errorf("metrics Service selector %v does not select the pod labels %v", metrics.Spec.Selector, pod.Labels)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", ctr.Resources)
	}
	sc, psc := ctr.SecurityContext, pod.Spec.SecurityContext
	switch {
	case sc == nil || psc == nil:
		t.Fatal("no securityContext on the pod or the container")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot,
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem,
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0,
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container securityContext %+v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault", sc)
	case psc.RunAsUser == nil || *psc.RunAsUser != 65532:
		t.Errorf("pod runAsUser %v, want 65532 (the image's user)", psc.RunAsUser)
	}
}

func fromUnstructured(t *testing.T, d document, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(d.obj.Object, into, true); err != nil {
		t.Fatalf("%s: %v", d, err)
	}
}

func equalSelector(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// flagPort returns the port of an address flag (--name=host:port) in args.
func flagPort(t *testing.T, args []string, name string) int32 {
	t.Helper()
	v, ok := flagValue(args, name)
	if !ok {
		t.Fatalf("args %q lack --%s", args, name)
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("--%s=%s: %v", name, v, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("--%s=%s: %v", name, v, err)
	}
	return int32(n)
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}
