package manifests

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"aeraki.io/aeraki/pkg/chart"
)

// chartNamespace is the root namespace of the chart's other values
// (k8s/chart/ci/other-values.yaml).
const chartNamespace = "mesh-root"

var (
	chartOnce sync.Once
	chartErr  error
)

// chartInstall is the chart rendered with its other values, as `helm install -f
// k8s/chart/ci/other-values.yaml` would apply it, on an apiserver of its own.
func chartInstall(t *testing.T) installation {
	t.Helper()
	values, err := chart.ReadValues(filepath.Join(repoRoot, chart.OtherValuesFile))
	if err != nil {
		t.Fatal(err)
	}
	if values["rootNamespace"] != chartNamespace {
		t.Fatalf("%s: rootNamespace %v, want %s", chart.OtherValuesFile, values["rootNamespace"], chartNamespace)
	}
	r, err := chart.Render(filepath.Join(repoRoot, chart.Dir), values)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := parseDocuments(chart.Dir+" with "+filepath.Base(chart.OtherValuesFile), r.YAML())
	if err != nil {
		t.Fatal(err)
	}
	return installation{docs: docs, namespace: chartNamespace, admin: chartAPIServer.RestConfig, once: &chartOnce, err: &chartErr}
}

// TestChart renders the chart with values unlike its defaults (another root
// namespace, an istiod revision, three replicas, every optional flag) and holds the
// output to what k8s/aeraki.yaml is held to: the apiserver accepts every document
// of a server-side dry run without a warning (TestManifestsAcceptedByAPIServer);
// installed, aeraki's ServiceAccount may do exactly what the controller needs and
// nothing more, in its namespace and elsewhere (TestRBACAllowsWhatTheControllerDoes),
// and the admission policy fences its writes (TestAdmissionPolicyFencesAerakisWrites);
// the NetworkPolicy lets the pod reach only the revision's istiod
// (TestNetworkPolicy); the pod's identity towards istiod, the route server's Service
// and the disruption budget are as TestInstallManifest wants them.
func TestChart(t *testing.T) {
	in := chartInstall(t)
	for _, d := range in.docs {
		if ns := d.obj.GetNamespace(); ns != "" && ns != chartNamespace {
			t.Errorf("%s: namespace %q, want the chart's root namespace %q", d, ns, chartNamespace)
		}
	}
	t.Run("accepted by the apiserver", func(t *testing.T) {
		// On a fresh apiserver: the documents are created, as by a first install.
		dryRunApply(t, in.admin(t), in.docs)
	})
	t.Run("RBAC", func(t *testing.T) { checkRBAC(t, in) })
	t.Run("admission policy", func(t *testing.T) { checkAdmissionPolicy(t, in) })
	t.Run("NetworkPolicy", func(t *testing.T) { checkNetworkPolicy(t, in.docs) })
	t.Run("Deployment", func(t *testing.T) {
		deploy := in.deployment(t)
		pod := deploy.Spec.Template
		ctr := pod.Spec.Containers[0]
		if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", deploy.Spec.Replicas)
		}
		for _, want := range []string{"--root-namespace=" + chartNamespace, "--istiod-addr=istiod-canary." + chartNamespace + ".svc:15012"} {
			if !slices.Contains(ctr.Args, want) {
				t.Errorf("args %q lack %q", ctr.Args, want)
			}
		}
		checkIstiodIdentity(t, pod.Spec, ctr)
		var routes *corev1.Service
		var pdb *policyv1.PodDisruptionBudget
		for _, d := range in.docs {
			switch {
			case d.obj.GetKind() == "Service" && d.obj.GetName() == "aeraki":
				routes = &corev1.Service{}
				fromUnstructured(t, d, routes)
			case d.obj.GetKind() == "PodDisruptionBudget":
				pdb = &policyv1.PodDisruptionBudget{}
				fromUnstructured(t, d, pdb)
			}
		}
		checkRouteService(t, routes, ctr, pod.Labels)
		checkDisruptionBudget(t, pdb, deploy, pod.Labels)
	})
}
