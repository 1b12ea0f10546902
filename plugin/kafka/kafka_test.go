package kafka

import (
	"errors"
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate/translatetest"
)

func TestGolden(t *testing.T) {
	for _, c := range []struct {
		name             string
		contribByDefault bool
	}{
		{"disabled-by-default", false},   // skipped: the reason says why and how to enable
		{"enabled-by-flag", true},        // two VIPs and the inbound target port, before tcp_proxy
		{"enabled-by-annotation", false}, // "true" overrides the default
		{"disabled-by-annotation", true}, // "false" overrides the default
		{"bad-annotation", true},         // error naming the annotation
	} {
		t.Run(c.name, func(t *testing.T) { translatetest.Golden(t, New(c.contribByDefault), model.Kafka, c.name) })
	}
}

// TestSkip checks that a skipped port is a SkipError, which translate reports without
// failing the service, and that a bad value is not.
func TestSkip(t *testing.T) {
	svc := &model.Service{Name: "k", Namespace: "k", Hosts: []string{"k.example"}, Addresses: []string{"240.0.0.1"}}
	port := &model.Port{Number: 9092, Name: "tcp-kafka", Protocol: model.Kafka, TargetPort: 9092}
	var skip *generator.SkipError

	_, err := New(false).Generate(generatortest.Context, svc, port)
	if !errors.As(err, &skip) || !strings.Contains(skip.Reason, ContribAnnotation) || !strings.Contains(skip.Reason, "--"+ContribFlag) ||
		!strings.Contains(skip.Reason, "ISTIO_META_"+ContribMetadataKey+"=true") {
		t.Errorf("default off: got %v, want a SkipError naming the annotation, the flag and the proxy metadata", err)
	}

	svc.Annotations = map[string]string{ContribAnnotation: "TRUE"}
	_, err = New(true).Generate(generatortest.Context, svc, port)
	if err == nil || errors.As(err, &skip) || !strings.Contains(err.Error(), ContribAnnotation) {
		t.Errorf("bad value: got %v, want an error naming the annotation", err)
	}
}

// FuzzGenerate checks that any port, host, address and annotation either fails with
// an error, skips exactly when the filter is off, or yields EnvoyFilters whose patch
// values Envoy accepts.
func FuzzGenerate(f *testing.F) {
	f.Add(uint32(9092), uint32(9092), "kafka.kafka.example", "240.240.20.1", true, false, "", false)
	f.Add(uint32(9092), uint32(19092), "kafka.kafka.svc.cluster.local", "10.96.0.40", true, true, "true", false)
	f.Add(uint32(9092), uint32(0), "kafka.kafka.example", "", true, true, "false", true)
	f.Add(uint32(1), uint32(65535), "*.Kafka.example", "2001:db8::1", false, true, "yes", true)
	f.Add(uint32(0), uint32(0), "", "", false, false, "", true)
	f.Add(uint32(9092), uint32(9092), "k|a.b", "10.0.0.0/8", false, true, "", true)
	f.Fuzz(func(t *testing.T, number, target uint32, host, address string, selector, annotated bool, value string, byDefault bool) {
		generatortest.SkipInvalidUTF8(t, host, address, value)
		svc := &model.Service{Name: "kafka", Namespace: "kafka", Hosts: []string{host}}
		if address != "" {
			svc.Addresses = []string{address}
		}
		if selector {
			svc.WorkloadSelector = map[string]string{"app": "kafka"}
		}
		if annotated {
			svc.Annotations = map[string]string{ContribAnnotation: value}
		}
		port := &model.Port{Number: number, Name: "tcp-kafka", Protocol: model.Kafka, TargetPort: target}
		efs, err := New(byDefault).Generate(generatortest.Context, svc, port)

		valid := !annotated || value == "true" || value == "false"
		on := byDefault
		if annotated {
			on = value == "true"
		}
		var skip *generator.SkipError
		switch {
		case !valid:
			if err == nil || errors.As(err, &skip) || !strings.Contains(err.Error(), ContribAnnotation) {
				t.Fatalf("annotation %q: got %v, want an error naming the annotation", value, err)
			}
		case !on:
			if !errors.As(err, &skip) {
				t.Fatalf("filter off: got %v, want a SkipError", err)
			}
		case errors.As(err, &skip):
			t.Fatalf("filter on: got a SkipError %v", err)
		default:
			generatortest.CheckResult(t, efs, err)
			checkContribProxiesOnly(t, efs)
		}
	})
}

// checkContribProxiesOnly requires every patch to match only the proxies that declare
// the contrib build: any other sidecar would reject the listener.
func checkContribProxiesOnly(t *testing.T, efs []*model.EnvoyFilter) {
	t.Helper()
	for _, ef := range efs {
		for i, p := range ef.Spec.GetConfigPatches() {
			if md := p.GetMatch().GetProxy().GetMetadata(); len(md) != 1 || md[ContribMetadataKey] != "true" {
				t.Errorf("%s patch %d: proxy metadata match %v, want only %s: \"true\"", ef.Key(), i, md, ContribMetadataKey)
			}
		}
	}
}
