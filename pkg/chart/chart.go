// Package chart renders and lints aeraki's Helm chart (k8s/chart) with Helm's own
// library, so that the install manifest k8s/aeraki.yaml is the chart rendered with its
// defaults (`make generate`) and the tests check exactly what `helm install` applies.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// Dir is the chart's directory, relative to the repository root.
const Dir = "k8s/chart"

// OtherValuesFile holds values unlike the defaults in every part they change, for
// the tests (chart-testing's ci/ folder), relative to the repository root.
const OtherValuesFile = Dir + "/ci/other-values.yaml"

// ReadValues reads a values file, as `helm install -f` does.
func ReadValues(file string) (map[string]any, error) {
	data, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return nil, err
	}
	values, err := loader.LoadValues(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return values, nil
}

// ReleaseName is the release name the chart is rendered as (`helm install aeraki`).
const ReleaseName = "aeraki"

// templateOrder is the order in which the rendered templates are written, as the
// objects depend on each other (the ServiceAccount and its RBAC before the
// Deployment); every template of the chart must be named here.
var templateOrder = []string{
	"rbac.yaml",
	"deployment.yaml",
	"services.yaml",
	"poddisruptionbudget.yaml",
	"admissionpolicy.yaml",
	"clusterroles.yaml",
	"networkpolicy.yaml",
}

// Rendered is the chart rendered with some values: its CRDs (the chart's crds/, as
// `helm install` creates them) and its objects, each a YAML stream whose documents
// start with "---".
type Rendered struct {
	CRDs    []byte
	Objects []byte
}

// YAML returns the CRDs and the objects as one stream, as `kubectl apply -f` takes it.
func (r Rendered) YAML() []byte {
	return append(slices.Clone(r.CRDs), r.Objects...)
}

// Render renders the chart in dir with values over its values.yaml, as
// `helm template --include-crds` would for the release aeraki in its root
// namespace, validating the values against the chart's schema if it has one.
func Render(dir string, values map[string]any) (Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return Rendered{}, fmt.Errorf("loading the chart %s: %w", dir, err)
	}
	merged, err := util.CoalesceValues(ch, values)
	if err != nil {
		return Rendered{}, fmt.Errorf("the chart's values: %w", err)
	}
	namespace, _ := merged["rootNamespace"].(string)
	top, err := util.ToRenderValues(ch, values, common.ReleaseOptions{
		Name: ReleaseName, Namespace: namespace, IsInstall: true, Revision: 1,
	}, nil)
	if err != nil {
		return Rendered{}, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return Rendered{}, err
	}
	var out Rendered
	var crds bytes.Buffer
	for _, crd := range ch.CRDObjects() {
		writeDocuments(&crds, crd.File.Data)
	}
	out.CRDs = crds.Bytes()
	objects, err := orderTemplates(ch, files)
	if err != nil {
		return Rendered{}, err
	}
	out.Objects = objects
	return out, nil
}

// orderTemplates joins the rendered templates in templateOrder, leaving out those
// that rendered to nothing (a part turned off by a value).
func orderTemplates(ch *chartv2.Chart, files map[string]string) ([]byte, error) {
	prefix := ch.Name() + "/templates/"
	var unknown []string
	for name := range files {
		base, ok := strings.CutPrefix(name, prefix)
		if !ok || !strings.HasSuffix(base, ".yaml") {
			continue // helpers (_*.tpl) render to nothing; NOTES.txt is not an object
		}
		if !slices.Contains(templateOrder, base) {
			unknown = append(unknown, base)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("templates %q have no place in the output: add them to templateOrder", unknown)
	}
	var out bytes.Buffer
	for _, base := range templateOrder {
		text, ok := files[prefix+base]
		if !ok {
			return nil, fmt.Errorf("the chart has no template %s", base)
		}
		writeDocuments(&out, []byte(text))
	}
	return out.Bytes(), nil
}

// writeDocuments appends a YAML stream to out, starting it with "---" unless it does,
// and leaving it out when it holds nothing but blank lines.
func writeDocuments(out *bytes.Buffer, data []byte) {
	if len(bytes.TrimSpace(data)) == 0 {
		return
	}
	data = bytes.TrimLeft(data, "\n")
	if !bytes.HasPrefix(data, []byte("---\n")) {
		out.WriteString("---\n")
	}
	out.Write(data)
	if !bytes.HasSuffix(data, []byte("\n")) {
		out.WriteByte('\n')
	}
}

// Lint runs Helm's linter on the chart in dir with values over its values.yaml, in
// the release namespace namespace: the rules of `helm lint --strict` (lint.RunAll,
// which Helm's lint action runs), and returns every finding above the
// informational ones.
func Lint(dir, namespace string, values map[string]any) error {
	result := lint.RunAll(dir, values, namespace)
	var errs []error
	for _, m := range result.Messages {
		if m.Severity > support.InfoSev {
			errs = append(errs, m)
		}
	}
	return errors.Join(errs...)
}
