// Package metricstest reads Prometheus registries in tests.
package metricstest

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// WithMetadata adds the HELP and TYPE lines of every family in want, exposition text
// without them, from the registry: what testutil.GatherAndCompare expects.
func WithMetadata(t testing.TB, reg *prometheus.Registry, want string) string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range families {
		var lines []string
		for _, l := range strings.Split(want, "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, mf.GetName()+"{") || strings.HasPrefix(l, mf.GetName()+" ") {
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			continue
		}
		b.WriteString("# HELP " + mf.GetName() + " " + mf.GetHelp() + "\n")
		b.WriteString("# TYPE " + mf.GetName() + " " + strings.ToLower(mf.GetType().String()) + "\n")
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// Value returns the counter or gauge series name{labels...} (pairs of name, value), or
// 0 if it does not exist.
func Value(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}
