package manifests

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// envoyFilter is an EnvoyFilter document.
func envoyFilter(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	return obj
}

const luaFilter = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: aeraki-outbound-evil-20880
  namespace: istio-system
  labels: {manager: aeraki}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: "function envoy_on_request(h) end"
`

// dubboFilter is an EnvoyFilter of aeraki's shape; labels and name as given.
func dubboFilter(name, labels string) string {
	return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: ` + name + `
  namespace: istio-system
  labels: ` + labels + `
spec:
  configPatches:
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        name: 240.240.0.1_20880
        filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}
    patch:
      operation: REPLACE
      value:
        name: envoy.filters.network.dubbo_proxy
        typedConfig:
          '@type': type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy
          statPrefix: outbound
`
}

// TestAdmissionPolicyFencesAerakisWrites: as aeraki's ServiceAccount, the apiserver
// refuses a Lua filter, an EnvoyFilter without aeraki's label or name prefix, a
// filter aeraki does not make under its own name, and changing or deleting an
// EnvoyFilter that is not aeraki's; it admits every EnvoyFilter the golden files
// hold. The admin is not fenced. TestChart asks the same of the chart installed with
// other values.
func TestAdmissionPolicyFencesAerakisWrites(t *testing.T) {
	checkAdmissionPolicy(t, manifestInstall(t))
}

// checkAdmissionPolicy installs in and checks its admission policy as
// TestAdmissionPolicyFencesAerakisWrites says.
func checkAdmissionPolicy(t *testing.T, in installation) {
	t.Helper()
	in.install(t)
	admin, _ := newClient(t, in.admin(t))
	sa, _ := newClient(t, serviceAccountConfigFor(t, in.admin(t), in.namespace))
	// In aeraki's namespace, where its outbound EnvoyFilters go.
	inNamespace := func(t *testing.T, doc string) *unstructured.Unstructured {
		t.Helper()
		obj := envoyFilter(t, doc)
		obj.SetNamespace(in.namespace)
		return obj
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()

	// The policy takes effect a moment after it is created.
	lua := inNamespace(t, luaFilter)
	deadline := time.Now().Add(timeout)
	for {
		err := sa.Create(ctx, lua.DeepCopy(), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "aeraki-envoyfilters") {
			break
		}
		if time.Now().After(deadline) {
			pol := &unstructured.Unstructured{}
			pol.SetAPIVersion("admissionregistration.k8s.io/v1")
			pol.SetKind("ValidatingAdmissionPolicy")
			gerr := admin.Get(ctx, client.ObjectKey{Name: "aeraki-envoyfilters"}, pol)
			t.Fatalf("a Lua filter as aeraki's ServiceAccount: %v, want the admission policy's refusal; policy %v %v", err, pol.Object["status"], gerr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for name, doc := range map[string]string{
		"no label":                 dubboFilter("aeraki-outbound-x-20880", "{}"),
		"another manager":          dubboFilter("aeraki-outbound-x-20880", "{manager: someone}"),
		"not aeraki's name prefix": dubboFilter("istio-outbound-x-20880", "{manager: aeraki}"),
		"a filter aeraki never makes": strings.ReplaceAll(dubboFilter("aeraki-outbound-x-20880", "{manager: aeraki}"),
			"dubbo_proxy.v3.DubboProxy", "tcp_proxy.v3.TcpProxy"),
	} {
		if err := sa.Create(ctx, inNamespace(t, doc), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "aeraki-envoyfilters") {
			t.Errorf("%s: %v, want the admission policy's refusal", name, err)
		}
	}

	// Someone else's EnvoyFilter: the admin may write it, aeraki may not touch it.
	foreign := inNamespace(t, dubboFilter("aeraki-outbound-foreign-20880", "{team: shop}"))
	if err := apply(ctx, admin, foreign.DeepCopy(), false); err != nil {
		t.Fatal(err)
	}
	if err := sa.Delete(ctx, foreign.DeepCopy()); err == nil || !strings.Contains(err.Error(), "aeraki-envoyfilters") {
		t.Errorf("deleting someone else's EnvoyFilter as aeraki: %v, want the admission policy's refusal", err)
	}
	taken := foreign.DeepCopy()
	if err := admin.Get(ctx, client.ObjectKeyFromObject(foreign), taken); err != nil {
		t.Fatal(err)
	}
	taken.SetLabels(map[string]string{"manager": "aeraki"})
	if err := sa.Update(ctx, taken, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "aeraki-envoyfilters") {
		t.Errorf("labelling someone else's EnvoyFilter as aeraki's: %v, want the admission policy's refusal", err)
	}

	// Everything aeraki generates is admitted.
	goldens, err := filepath.Glob(filepath.Join(repoRoot, "plugin", "*", "testdata", "*.golden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	translated, err := filepath.Glob(filepath.Join(repoRoot, "pkg", "translate", "testdata", "*.golden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	goldens = append(goldens, translated...)
	admitted := 0
	for _, file := range goldens {
		rel, _ := filepath.Rel(repoRoot, file)
		docs, err := readDocuments(rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			if d.obj.GetKind() != "EnvoyFilter" {
				continue
			}
			if err := ensureNamespace(ctx, admin, d.obj.GetNamespace()); err != nil {
				t.Fatal(err)
			}
			if err := sa.Create(ctx, d.obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %s refused: %v", rel, d, err)
			}
			admitted++
		}
	}
	if admitted < 50 {
		t.Errorf("only %d golden EnvoyFilters checked", admitted)
	}
}
