package scale

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// sample is one sample of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// samples is a scrape of a /metrics endpoint.
type samples []sample

// parseMetrics reads the Prometheus text format: comments and blank lines are
// skipped, label values are unescaped, a timestamp after the value is ignored.
func parseMetrics(text string) (samples, error) {
	var out samples
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", i+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no metric name")
	}
	s.name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, " ,")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			key, rest, ok := strings.Cut(line, "=")
			if !ok || !strings.HasPrefix(rest, `"`) {
				return s, fmt.Errorf("label without a quoted value")
			}
			value, rest, err := unquote(rest[1:])
			if err != nil {
				return s, err
			}
			s.labels[strings.TrimSpace(key)] = value
			line = rest
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, err
	}
	s.value = v
	return s, nil
}

// unquote reads a label value up to its closing quote and returns it and what follows.
func unquote(in string) (value, rest string, err error) {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		switch c := in[i]; c {
		case '"':
			return b.String(), in[i+1:], nil
		case '\\':
			i++
			if i == len(in) {
				return "", "", fmt.Errorf("unterminated escape")
			}
			if in[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(in[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated label value")
}

// sum adds the values of the samples named name whose labels include every key and
// value of match.
func (ss samples) sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range ss {
		if s.name == name && hasLabels(s, match) {
			total += s.value
		}
	}
	return total
}

// by adds the values of the samples named name that match, grouped by the value of
// label key.
func (ss samples) by(name, key string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		if s.name == name && hasLabels(s, match) {
			out[s.labels[key]] += s.value
		}
	}
	return out
}

func hasLabels(s sample, match map[string]string) bool {
	for k, v := range match {
		if s.labels[k] != v {
			return false
		}
	}
	return true
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="networking.istio.io",resource="envoyfilters",scope="resource",subresource="",verb="POST",version="v1alpha3"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="networking.istio.io",resource="envoyfilters",scope="resource",subresource="",verb="PUT",version="v1alpha3"} 2
apiserver_request_total{code="409",component="apiserver",dry_run="",group="networking.istio.io",resource="envoyfilters",scope="resource",subresource="",verb="POST",version="v1alpha3"} 1
apiserver_request_total{code="201",group="",resource="services",verb="POST"} 100
odd{path="a \"quoted\" \\ value, with comma",} 1.5e+00 1700000000000
aeraki_pushes_total{result="changed"} 3
go_goroutines 42
`
	ss, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	ef := map[string]string{"resource": "envoyfilters", "group": "networking.istio.io"}
	if got := ss.sum("apiserver_request_total", ef); got != 10 {
		t.Errorf("sum of EnvoyFilter requests = %v, want 10", got)
	}
	if got := ss.by("apiserver_request_total", "verb", ef); got["POST"] != 8 || got["PUT"] != 2 || len(got) != 2 {
		t.Errorf("EnvoyFilter requests by verb = %v, want POST 8 and PUT 2", got)
	}
	if got := ss.sum("odd", map[string]string{"path": `a "quoted" \ value, with comma`}); got != 1.5 {
		t.Errorf("escaped label value: sum = %v, want 1.5", got)
	}
	if got := ss.sum("go_goroutines", nil); got != 42 {
		t.Errorf("unlabelled sample = %v, want 42", got)
	}
	for _, bad := range []string{`x{a="b} 1`, `x{a=b} 1`, `x{a="b"}`, `{a="b"} 1`, `x nan-ish`} {
		if _, err := parseMetrics(bad); err == nil {
			t.Errorf("parseMetrics(%q) = nil error, want one", bad)
		}
	}
}
