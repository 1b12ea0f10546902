package translate

import (
	"errors"
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/model"
)

func service(ns, name string, hosts []string, ports ...*model.Port) *model.Service {
	return &model.Service{Name: name, Namespace: ns, Hosts: hosts, Addresses: []string{"10.0.0.1"}, Ports: ports}
}

// fakeGen makes one EnvoyFilter per port named after the first host, or fails for
// services named "bad".
var fakeGen = GeneratorFunc(func(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	if svc.Name == "bad" {
		return nil, errors.New("broken input")
	}
	return []*model.EnvoyFilter{{
		Name: ObjectName(Outbound, svc.Hosts[0], port.Number), Namespace: ctx.RootNamespace,
		Annotations: map[string]string{model.ServiceAnnotation: svc.Key()},
	}}, nil
})

func TestTranslate(t *testing.T) {
	dubbo := func(n uint32) *model.Port { return &model.Port{Number: n, Protocol: model.Dubbo} }
	thrift := &model.Port{Number: 9090, Protocol: model.Thrift}
	services := []*model.Service{
		service("a", "one", []string{"one.a"}, dubbo(20880), dubbo(20881)),
		service("a", "bad", []string{"bad.a"}, dubbo(20880)),
		service("b", "dup", []string{"one.a"}, dubbo(20880)), // same host and port as a/one
		service("c", "thrift-only", []string{"t.c"}, thrift), // no generator registered
	}
	got := Translate(&Context{RootNamespace: "istio-system"}, Registry{model.Dubbo: fakeGen}, services)

	var keys []string
	for _, e := range SortedFilters(got.Filters) {
		keys = append(keys, e.Key())
	}
	want := "istio-system/aeraki-outbound-one.a-20880 istio-system/aeraki-outbound-one.a-20881"
	if strings.Join(keys, " ") != want {
		t.Errorf("filters = %v, want %s", keys, want)
	}
	if len(got.Failed) != 2 || got.Failed["a/bad"] == nil || got.Failed["b/dup"] == nil {
		t.Fatalf("failed = %v, want a/bad and b/dup", got.Failed)
	}
	if msg := got.Failed["b/dup"].Error(); !strings.Contains(msg, "also generated for a/one") {
		t.Errorf("conflict error %q does not name the other service", msg)
	}
	if got.Services[model.Dubbo] != 1 || got.Services[model.Thrift] != 0 {
		t.Errorf("service counts = %v", got.Services)
	}
	if len(got.Skipped) != 0 {
		t.Errorf("skipped = %v", got.Skipped)
	}
}

func TestTranslateTellsOfAMissingAddress(t *testing.T) {
	headless := service("a", "headless", []string{"h.a"}, &model.Port{Number: 2181, Protocol: model.Dubbo})
	headless.Addresses = nil
	got := Translate(&Context{RootNamespace: "istio-system"}, Registry{model.Dubbo: fakeGen}, []*model.Service{headless})
	skipped := got.Skipped["a/headless"]
	if len(got.Filters) != 1 || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), "no address") {
		t.Fatalf("filters %d, skipped %v: want the filter and a note about the missing address", len(got.Filters), skipped)
	}
}

func TestObjectName(t *testing.T) {
	cases := map[string]string{
		"reviews.default.svc.cluster.local": "aeraki-outbound-reviews.default.svc.cluster.local-20880",
		"*.example.com":                     "aeraki-outbound-wildcard.example.com-20880",
		"Upper_Case.Example":                "aeraki-outbound-upper-case.example-20880",
	}
	for host, want := range cases {
		if got := ObjectName(Outbound, host, 20880); got != want {
			t.Errorf("ObjectName(%q) = %q, want %q", host, got, want)
		}
	}
	long := strings.Repeat("a", 300) + ".example"
	n1, n2 := ObjectName(Inbound, long, 1), ObjectName(Inbound, long+"x", 1)
	if len(n1) > 253 || n1 == n2 {
		t.Errorf("long hosts: %d chars, distinct=%v", len(n1), n1 != n2)
	}
}
