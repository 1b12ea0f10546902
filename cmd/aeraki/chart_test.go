package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"aeraki.io/aeraki/pkg/chart"
)

// TestChartArgsParse: every argument the Helm chart gives the container, with its
// defaults and with values that set every optional flag, is one of aeraki's flags
// with a value it accepts (parsing stops at the trailing -h, before anything runs).
func TestChartArgsParse(t *testing.T) {
	root := filepath.Join("..", "..")
	other, err := chart.ReadValues(filepath.Join(root, chart.OtherValuesFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range map[string]map[string]any{
		"defaults":     nil,
		"other values": other,
		"parts off": {"routeServer": map[string]any{"enabled": false}, "metrics": map[string]any{"secure": false},
			"istiod": map[string]any{"address": "10.0.0.7:15012", "serverName": "istiod.istio-system.svc"}},
	} {
		r, err := chart.Render(filepath.Join(root, chart.Dir), values)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		args := deploymentArgs(t, r.Objects)
		var stderr strings.Builder
		if code := serve(append(args, "-h"), &stderr); code != 0 {
			t.Errorf("%s: aeraki %q: exit %d, want 0\n%s", name, args, code, stderr.String())
		}
	}
}

// deploymentArgs returns the container arguments of the Deployment among the YAML
// documents of data.
func deploymentArgs(t *testing.T, data []byte) []string {
	t.Helper()
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" && len(d.Spec.Template.Spec.Containers) == 1 {
			return d.Spec.Template.Spec.Containers[0].Args
		}
	}
	t.Fatal("no Deployment with one container")
	return nil
}
