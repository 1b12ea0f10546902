// Package generatortest runs a generator over YAML inputs and compares the result
// with reviewed golden files. Every patch value is validated on the way.
package generatortest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// Context is the generator context of the golden tests.
var Context = &generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}

// RouteDiscovery is the route server of the tests of shared ports: the controller's,
// installed in istio-system of a mesh of trust domain cluster.local.
var RouteDiscovery = &generator.RouteDiscovery{
	Cluster:    patch.RouteCluster,
	Host:       "aeraki.istio-system.svc.cluster.local",
	Port:       15080,
	Identities: []string{model.SPIFFEID("cluster.local", "istio-system", "aeraki")},
}

// Push returns the services of snap and Context with lookups into them and the
// snapshot's Secrets, as a push's generators see them. A failed read fails the test.
func Push(t testing.TB, snap *model.Snapshot) (*generator.Context, []*model.Service) {
	t.Helper()
	services, err := model.BuildServices(snap)
	if err != nil {
		t.Fatalf("building services: %v", err)
	}
	return Context.WithLookup(&lookup{t: t, services: model.NewHostIndex(services), snap: snap}), services
}

type lookup struct {
	t        testing.TB
	services model.HostIndex
	snap     *model.Snapshot
}

func (l *lookup) Service(host string) *model.Service { return l.services[host] }

func (l *lookup) Secret(namespace, name string) *model.Secret {
	if l.snap.Secret == nil {
		return nil
	}
	s, err := l.snap.Secret(namespace, name)
	if err != nil {
		l.t.Fatalf("reading Secret %s/%s: %v", namespace, name, err)
	}
	return s
}

// Golden runs gen for every port of protocol p of every service in testdata/<name>.yaml
// and compares the EnvoyFilters (or the error) with testdata/<name>.golden.yaml. The
// filters the translation leaves out, which leftOut returns for the snapshot (their
// keys, to the key of the filter that serves instead; see translatetest, which
// knows the translation), are notes naming the one that serves, not filters.
func Golden(t *testing.T, gen generator.Generator, p model.Protocol, name string, leftOut func(*model.Snapshot) map[string]string) {
	t.Helper()
	in := filepath.Join("testdata", name+".yaml")
	objs, errs := manifest.ReadPaths([]string{in})
	if len(errs) > 0 {
		t.Fatalf("reading %s: %v", in, errs)
	}
	var out bytes.Buffer
	snap := objs.Snapshot(Context.DomainSuffix)
	served := leftOut(snap)
	ctx, services := Push(t, snap)
	for _, svc := range services {
		for _, port := range svc.Ports {
			if port.Protocol != p {
				continue
			}
			efs, err := gen.Generate(ctx, svc, port)
			var skip *generator.SkipError
			if errors.As(err, &skip) {
				fmt.Fprintf(&out, "# %s %s port %d: skipped, left as plain TCP: %v\n", svc.Kind(), svc.Key(), port.Number, skip)
				continue
			}
			if err != nil {
				fmt.Fprintf(&out, "# %s %s port %d: error: %v\n", svc.Kind(), svc.Key(), port.Number, err)
				continue
			}
			Validate(t, efs)
			fmt.Fprintf(&out, "# %s %s port %d\n", svc.Kind(), svc.Key(), port.Number)
			written := efs[:0:0]
			for _, ef := range efs {
				if by, ok := served[ef.Key()]; ok {
					fmt.Fprintf(&out, "# EnvoyFilter %s left out: %s, of an older service, is the same and serves both\n", ef.Key(), by)
					continue
				}
				written = append(written, ef)
			}
			if err := manifest.WriteEnvoyFilters(&out, written); err != nil {
				t.Fatal(err)
			}
			out.WriteString("---\n")
		}
	}
	Compare(t, filepath.Join("testdata", name+".golden.yaml"), out.Bytes())
}

// Compare checks got against a golden file, or rewrites it with -update.
func Compare(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden) //nolint:gosec // a golden file of the test
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it, then review it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", golden, diff)
	}
}

// Validate checks every patch the way istiod and Envoy will read it: network filter
// values (and the filter their match names), and CLUSTER patches whole (operation,
// match, value: see patch.ValidateClusterPatch). Other applyTo values are
// reported: no generator makes them, so nothing checks them.
func Validate(t *testing.T, efs []*model.EnvoyFilter) {
	t.Helper()
	for _, ef := range efs {
		for i, p := range ef.Spec.GetConfigPatches() {
			switch p.GetApplyTo() {
			case networking.EnvoyFilter_NETWORK_FILTER:
				if err := patch.ValidateFilterValue(p.GetPatch().GetValue()); err != nil {
					t.Errorf("%s patch %d: %v", ef.Key(), i, err)
				}
				if err := sameAsProtoJSON(p.GetPatch().GetValue(), &listener.Filter{}); err != nil {
					t.Errorf("%s patch %d: %v", ef.Key(), i, err)
				}
				if name := p.GetMatch().GetListener().GetFilterChain().GetFilter().GetName(); !strings.HasPrefix(name, "envoy.filters.network.") {
					t.Errorf("%s patch %d: filter chain match names no filter (%q): istiod would skip or misplace it", ef.Key(), i, name)
				}
			case networking.EnvoyFilter_CLUSTER:
				if err := patch.ValidateClusterPatch(p); err != nil {
					t.Errorf("%s patch %d: %v", ef.Key(), i, err)
				}
				if value := p.GetPatch().GetValue(); value != nil { // a REMOVE has none
					if err := sameAsProtoJSON(value, &cluster.Cluster{}); err != nil {
						t.Errorf("%s patch %d: %v", ef.Key(), i, err)
					}
				}
			default:
				t.Errorf("%s patch %d: applyTo %v: Validate knows NETWORK_FILTER and CLUSTER only", ef.Key(), i, p.GetApplyTo())
			}
		}
	}
}

// sameAsProtoJSON checks that a patch value is exactly what protojson writes for the
// Envoy message it decodes to. Generators build values by walking the message (see
// patch's toStruct); protojson is the reference.
func sameAsProtoJSON(value *structpb.Struct, into proto.Message) error {
	raw, err := protojson.Marshal(value)
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(raw, into); err != nil {
		return err
	}
	if raw, err = protojson.Marshal(into); err != nil {
		return err
	}
	want := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, want); err != nil {
		return err
	}
	if diff := cmp.Diff(want, value, protocmp.Transform()); diff != "" {
		return fmt.Errorf("patch value differs from protojson's form of the same %T (-protojson +value):\n%s", into, diff)
	}
	return nil
}

// CheckResult holds one Generate result to the rules every generator keeps: an error
// comes without filters, says something, and is never an invalid filter of the
// generator's own making; success comes with filters Envoy accepts. It reports
// whether the generator succeeded.
func CheckResult(t *testing.T, efs []*model.EnvoyFilter, err error) bool {
	t.Helper()
	if err != nil {
		if efs != nil {
			t.Errorf("%d EnvoyFilters returned with error %v", len(efs), err)
		}
		if err.Error() == "" {
			t.Error("empty error message")
		}
		if errors.Is(err, generator.ErrInvalidFilter) {
			t.Errorf("generator bug, not an input error: %v", err)
		}
		return false
	}
	if len(efs) == 0 {
		t.Error("no error and no EnvoyFilters")
	}
	Validate(t, efs)
	return true
}

// SkipInvalidUTF8 skips fuzz inputs no Kubernetes object can hold: its strings are
// JSON, so valid UTF-8.
func SkipInvalidUTF8(t *testing.T, ss ...string) {
	t.Helper()
	for _, s := range ss {
		if !utf8.ValidString(s) {
			t.Skip("not valid UTF-8: no Kubernetes object can hold it")
		}
	}
}
