package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

// WriteVerbs are the verbs of apiserver_request_total that change an object.
var WriteVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}

// EnvoyFilterWrites is the apiserver's count of EnvoyFilter write requests so far,
// by verb (every response code counts), from its own metrics: WritesSince of two
// counts is what was written between them, by anyone.
func (c *ControlPlane) EnvoyFilterWrites(ctx context.Context) (map[string]int, error) {
	kube, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return nil, err
	}
	body, err := kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	out := map[string]int{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := labelsOf(m)
		if l["group"] == "networking.istio.io" && l["resource"] == "envoyfilters" && slices.Contains(WriteVerbs, l["verb"]) {
			out[l["verb"]] += int(m.GetCounter().GetValue())
		}
	}
	return out, nil
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// WritesSince is the writes between two counts of EnvoyFilterWrites, by verb,
// leaving out verbs with none.
func WritesSince(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for _, verb := range WriteVerbs {
		if d := after[verb] - before[verb]; d != 0 {
			out[verb] = d
		}
	}
	return out
}
