package manifests

import (
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"aeraki.io/aeraki/pkg/chart"
)

// manifestDirs hold everything a user applies: the install manifest, the CRDs and the
// demos, present and future.
var manifestDirs = []string{"k8s", "demo"}

// manifestFiles returns every YAML file under manifestDirs, relative to the root,
// but the Helm chart's: its templates are no manifests until rendered
// (k8s/aeraki.yaml is the chart with its defaults; TestChart renders other values).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range manifestDirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(repoRoot, path)
			if err != nil {
				return err
			}
			if d.IsDir() && filepath.ToSlash(rel) == chart.Dir {
				return filepath.SkipDir
			}
			if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
				return nil
			}
			files = append(files, filepath.ToSlash(rel))
			return nil
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
	dryRunApply(t, nil, docs)
	t.Logf("%d documents in %d files checked", len(docs), len(files))
}

// dryRunApply applies docs with a server-side dry run with the admin config cfg
// (envtest's when nil), as TestManifestsAcceptedByAPIServer says, and fails t for
// every document the apiserver rejects or warns about.
func dryRunApply(t *testing.T, cfg *rest.Config, docs []document) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, warns := newClient(t, cfg)
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
// validates: everything in Istio's root namespace and no Namespace of its own; the
// Deployment's flags, probes, ports and hardening, and its identity towards istiod (the
// projected token and the mesh root certificate where the flags read them); RBAC
// without wildcards bound to aeraki's ServiceAccount, its Lease by name.
func TestInstallManifest(t *testing.T) {
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	var (
		deploy       *appsv1.Deployment
		metrics      *corev1.Service
		routes       *corev1.Service
		pdb          *policyv1.PodDisruptionBudget
		namespaces   []string
		roles        []rbacv1.PolicyRule
		nsRoles      []rbacv1.PolicyRule // the Roles' rules, in installNamespace
		bindSubjects []rbacv1.Subject
		crds         int
		metricsRead  *rbacv1.ClusterRole
	)
	clusterScoped := []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
	for _, d := range docs {
		if ns := d.obj.GetNamespace(); ns != installNamespace && !slices.Contains(clusterScoped, d.obj.GetKind()) {
			t.Errorf("%s: namespace %q, want %q (Istio's root namespace)", d, ns, installNamespace)
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
			svc := &corev1.Service{}
			fromUnstructured(t, d, svc)
			switch svc.Name {
			case "aeraki-metrics":
				metrics = svc
			case "aeraki":
				routes = svc
			default:
				t.Errorf("%s: a Service nothing needs", d)
			}
		case "PodDisruptionBudget":
			pdb = &policyv1.PodDisruptionBudget{}
			fromUnstructured(t, d, pdb)
		case "ClusterRole", "Role":
			var r rbacv1.ClusterRole // a Role has the same rules
			fromUnstructured(t, d, &r)
			roles = append(roles, r.Rules...)
			if d.obj.GetName() == "aeraki-metrics-reader" {
				metricsRead = &r
			}
			if d.obj.GetKind() == "Role" {
				nsRoles = append(nsRoles, r.Rules...)
			}
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, d, &b)
			bindSubjects = append(bindSubjects, b.Subjects...)
		}
	}
	if len(namespaces) > 0 || crds != 2 || deploy == nil || metrics == nil {
		t.Fatalf("want no Namespace (Istio creates and owns %s), 2 CRDs, a Deployment and a Service; got namespaces %v, %d CRDs, Deployment %t, Service %t",
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
		"--leader-elect", "--root-namespace=" + installNamespace, "--leader-election-namespace=$(POD_NAMESPACE)",
	} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("args %q lack %q", ctr.Args, want)
		}
	}
	// istiod's secure port, as the flag's default says; never the plaintext path.
	if v, ok := flagValue(ctr.Args, "istiod-addr"); ok && v != defaultIstiodAddr {
		t.Errorf("--istiod-addr=%s, want istiod's TLS port in the root namespace, %s", v, defaultIstiodAddr)
	}
	if slices.ContainsFunc(ctr.Args, func(a string) bool { return a == "--istiod-plaintext" || strings.HasPrefix(a, "--istiod-plaintext=") }) {
		t.Errorf("args %q connect to istiod in plaintext: a stock istiod refuses it", ctr.Args)
	}
	checkIstiodIdentity(t, pod.Spec, ctr)
	leaseID := leaderElectionID(ctr.Args)
	for _, verb := range []string{"get", "update"} {
		if !slices.ContainsFunc(nsRoles, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, "coordination.k8s.io") && slices.Contains(r.Resources, "leases") &&
				slices.Contains(r.Verbs, verb) && slices.Equal(r.ResourceNames, []string{leaseID})
		}) {
			t.Errorf("no Role rule allows %s on the Lease %q (--leader-election-id) by name alone", verb, leaseID)
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
	// Served over HTTPS to authorized scrapers; plain HTTP is for local runs.
	if v, ok := flagValue(ctr.Args, "metrics-secure"); (ok && v != "true") || slices.Contains(ctr.Args, "--metrics-secure=false") {
		t.Errorf("args %q serve metrics without TLS and authorization", ctr.Args)
	}
	if len(metrics.Spec.Ports) == 1 && !strings.HasPrefix(metrics.Spec.Ports[0].Name, "https") {
		t.Errorf("metrics Service port %q: name it https-... (the metrics are served over HTTPS)", metrics.Spec.Ports[0].Name)
	}
	wantReader := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if metricsRead == nil || !equality.Semantic.DeepEqual(metricsRead.Rules, wantReader) {
		t.Errorf("ClusterRole aeraki-metrics-reader %+v, want exactly the rules %+v", metricsRead, wantReader)
	}
	if !equalSelector(metrics.Spec.Selector, pod.Labels) {
		t.Errorf("metrics Service selector %v does not select the pod labels %v", metrics.Spec.Selector, pod.Labels)
	}
	checkRouteService(t, routes, ctr, pod.Labels)
	checkDisruptionBudget(t, pdb, deploy, pod.Labels)
	if !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool {
		return e.Name == "MEMORY_LIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
	}) || slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" }) {
		t.Error("want MEMORY_LIMIT from limits.memory (the soft limit is 90% of it) and no GOMEMLIMIT, which would take it all")
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

// The defaults of aeraki's flags for its connection to istiod (cmd/aeraki; the image
// test checks them against the binary's -h).
const (
	defaultIstiodAddr = "istiod.istio-system.svc:15012"
	defaultRootCert   = "/var/run/secrets/istio/root-cert.pem"
	defaultToken      = "/var/run/secrets/tokens/istio-token"
	// defaultLeaseName is the default of --leader-election-id.
	defaultLeaseName = "aeraki-leader"
)

// leaderElectionID returns the name of the leader election Lease args give.
func leaderElectionID(args []string) string {
	if v, ok := flagValue(args, "leader-election-id"); ok {
		return v
	}
	return defaultLeaseName
}

// checkIstiodIdentity checks that the files aeraki reads to authenticate to istiod are
// where the pod puts them: the mesh root certificate (key root-cert.pem of the
// ConfigMap istio-ca-root-cert) at --istiod-root-cert, and a projected token of its
// ServiceAccount for istiod's audience, istio-ca, at --istiod-token.
func checkIstiodIdentity(t *testing.T, pod corev1.PodSpec, ctr corev1.Container) {
	t.Helper()
	for flag, def := range map[string]string{"istiod-root-cert": defaultRootCert, "istiod-token": defaultToken} {
		file := def
		if v, ok := flagValue(ctr.Args, flag); ok {
			file = v
		}
		vol, mount, rel, ok := mountedAt(pod, ctr, file)
		if !ok {
			t.Errorf("--%s reads %s, but no volume is mounted there", flag, file)
			continue
		}
		if !mount.ReadOnly {
			t.Errorf("the volume %q at %s is mounted read-write, want readOnly", mount.Name, mount.MountPath)
		}
		switch flag {
		case "istiod-root-cert":
			cm := vol.ConfigMap
			switch {
			case cm == nil || cm.Name != "istio-ca-root-cert":
				t.Errorf("--%s reads %s from the volume %s, want the ConfigMap istio-ca-root-cert", flag, file, volumeJSON(vol))
			case cm.Optional != nil && *cm.Optional:
				t.Errorf("the ConfigMap istio-ca-root-cert is optional: without it aeraki cannot verify istiod")
			case len(cm.Items) == 0 && rel != "root-cert.pem",
				len(cm.Items) > 0 && !slices.ContainsFunc(cm.Items, func(k corev1.KeyToPath) bool { return k.Key == "root-cert.pem" && k.Path == rel }):
				t.Errorf("--%s reads %s, but the volume %s puts no key root-cert.pem at %s", flag, file, volumeJSON(vol), rel)
			}
		case "istiod-token":
			if vol.Projected == nil || !slices.ContainsFunc(vol.Projected.Sources, func(p corev1.VolumeProjection) bool {
				sat := p.ServiceAccountToken
				return sat != nil && sat.Path == rel && sat.Audience == "istio-ca" && sat.ExpirationSeconds != nil
			}) {
				t.Errorf("--%s reads %s, but the volume %s projects no ServiceAccount token with audience istio-ca and an expiry at %s",
					flag, file, volumeJSON(vol), rel)
			}
		}
	}
}

// volumeJSON shows a volume in a message.
func volumeJSON(v corev1.Volume) string {
	data, err := json.Marshal(v)
	if err != nil {
		return v.Name
	}
	return string(data)
}

// mountedAt returns the volume the container sees at file, its mount and file's path
// inside the volume; the deepest mount wins, as in the container.
func mountedAt(pod corev1.PodSpec, ctr corev1.Container, file string) (corev1.Volume, corev1.VolumeMount, string, bool) {
	var best *corev1.VolumeMount
	var rel string
	for i, m := range ctr.VolumeMounts {
		r, err := filepath.Rel(m.MountPath, file)
		if err != nil || r == "." || r == ".." || strings.HasPrefix(r, "../") || m.SubPath != "" {
			continue
		}
		if best == nil || len(m.MountPath) > len(best.MountPath) {
			best, rel = &ctr.VolumeMounts[i], filepath.ToSlash(r)
		}
	}
	if best == nil {
		return corev1.Volume{}, corev1.VolumeMount{}, "", false
	}
	for _, v := range pod.Volumes {
		if v.Name == best.Name {
			return v, *best, rel, true
		}
	}
	return corev1.Volume{}, corev1.VolumeMount{}, "", false
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

// istiodWeakeners are istiod settings that would let aeraki in without proving its
// identity: the "api" generator's root-namespace check, identities over plaintext, and
// the match of identity and node. aeraki authenticates as a sidecar does; nothing we
// ship turns one off.
var istiodWeakeners = []string{"ENABLE_XDS_API_GENERATOR_AUTH", "XDS_AUTH_PLAINTEXT", "PILOT_ENABLE_XDS_IDENTITY_CHECK"}

// TestNothingWeakensIstiod checks that no manifest, script or other file under k8s/
// and demo/ names one of istiodWeakeners or aeraki's plaintext flag, and that no
// Markdown document sets one (a doc may name it, not tell anyone to set it).
func TestNothingWeakensIstiod(t *testing.T) {
	names := strings.Join(istiodWeakeners, "|")
	setting := regexp.MustCompile(`\b(` + names + `)\b\s*[=:]|\.env\.(` + names + `)\b`)
	shipped := append(slices.Clone(istiodWeakeners), "istiod-plaintext")
	checked := 0
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		inShipped := slices.ContainsFunc(manifestDirs, func(dir string) bool { return strings.HasPrefix(rel, dir+"/") })
		if !d.Type().IsRegular() || (!inShipped && filepath.Ext(rel) != ".md") {
			return nil
		}
		data, err := os.ReadFile(filepath.Clean(path))
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(data), "\n") {
			if inShipped {
				for _, name := range shipped {
					if strings.Contains(line, name) {
						t.Errorf("%s:%d names %s: istiod keeps its defaults and aeraki authenticates to it\n\t%s", rel, i+1, name, line)
					}
				}
			} else if setting.MatchString(line) {
				t.Errorf("%s:%d sets an istiod check off: aeraki needs none\n\t%s", rel, i+1, line)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files checked", checked)
}

// checkRouteService: the route server's Service is what sidecars dial by default
// (aeraki.<namespace>.svc, port --route-server-port), targets the port the container serves routes
// on (--route-server-addr), selects the pod, sends only to ready replicas, and is
// kept out of the mesh's registry.
func checkRouteService(t *testing.T, svc *corev1.Service, ctr corev1.Container, podLabels map[string]string) {
	t.Helper()
	if svc == nil {
		t.Fatal("no Service aeraki for the route server")
	}
	routesPort := flagPort(t, ctr.Args, "route-server-addr")
	var target int32
	for _, p := range ctr.Ports {
		if p.Name == svc.Spec.Ports[0].TargetPort.String() {
			target = p.ContainerPort
		}
	}
	dialed := int32(15080) // --route-server-port's default
	if v, ok := flagValue(ctr.Args, "route-server-port"); ok {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			t.Fatalf("--route-server-port=%s: %v", v, err)
		}
		dialed = int32(n)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != dialed || target != routesPort {
		t.Errorf("route Service ports %+v, want %d (--route-server-port) targeting the container port %d (--route-server-addr)", svc.Spec.Ports, dialed, routesPort)
	}
	if !equalSelector(svc.Spec.Selector, podLabels) || svc.Spec.PublishNotReadyAddresses {
		t.Errorf("route Service selector %v (pod labels %v), publishNotReadyAddresses %v: want the pod's ready replicas only",
			svc.Spec.Selector, podLabels, svc.Spec.PublishNotReadyAddresses)
	}
	if svc.Annotations["networking.istio.io/exportTo"] != "." {
		t.Errorf("route Service annotations %v: want it kept out of other namespaces' registries (exportTo \".\")", svc.Annotations)
	}
}

// checkDisruptionBudget: voluntary disruptions leave at least one replica, and the
// budget leaves room to drain one.
func checkDisruptionBudget(t *testing.T, pdb *policyv1.PodDisruptionBudget, deploy *appsv1.Deployment, podLabels map[string]string) {
	t.Helper()
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget")
	}
	replicas := int32(1)
	if deploy.Spec.Replicas != nil {
		replicas = *deploy.Spec.Replicas
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || int32(pdb.Spec.MinAvailable.IntValue()) >= replicas {
		t.Errorf("PodDisruptionBudget minAvailable %v with %d replicas: want at least 1 and fewer than the replicas", pdb.Spec.MinAvailable, replicas)
	}
	if pdb.Spec.Selector == nil || !equalSelector(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pod labels %v", pdb.Spec.Selector, podLabels)
	}
}
