package patch

import (
	"errors"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	redisclusters "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/redis/v3"
	tcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var outboundMatch = &networking.EnvoyFilter_ClusterMatch{Service: "a.example", PortNumber: 6379}

func TestClusterPatch(t *testing.T) {
	// A MERGE value is partial: no name, no type.
	p, err := ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_MERGE,
		&cluster.Cluster{ConnectTimeout: durationpb.New(1e9), UpstreamConnectionOptions: &cluster.UpstreamConnectionOptions{TcpKeepalive: &core.TcpKeepalive{}}})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetApplyTo() != networking.EnvoyFilter_CLUSTER || p.GetMatch().GetCluster().GetService() != "a.example" || p.GetMatch().GetContext() != networking.EnvoyFilter_SIDECAR_OUTBOUND {
		t.Errorf("patch %v", p)
	}
	// An empty message is kept: an empty tcp_keepalive turns keepalive on.
	ka := p.GetPatch().GetValue().GetFields()["upstreamConnectionOptions"].GetStructValue().GetFields()["tcpKeepalive"]
	if ka.GetStructValue() == nil {
		t.Errorf("empty tcpKeepalive dropped from %v", p.GetPatch().GetValue())
	}

	// A whole cluster, with typed configs inside, for ADD.
	redis := &cluster.Cluster{
		Name:                 "outbound|6379||a.example",
		ClusterDiscoveryType: &cluster.Cluster_ClusterType{ClusterType: &cluster.Cluster_CustomClusterType{Name: "envoy.clusters.redis", TypedConfig: mustAny(t, &redisclusters.RedisClusterConfig{})}},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
	}
	if _, err := ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_ADD, redis); err != nil {
		t.Fatal(err)
	}
	if _, err := ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_REMOVE, nil); err != nil {
		t.Fatal(err)
	}
}

// TestClusterPatchRejects: every bad value or patch is reported as ErrInvalidFilter,
// typed configs inside an Any included.
func TestClusterPatchRejects(t *testing.T) {
	badTCP := mustAny(t, &tcp.TcpProxy{}) // stat_prefix is required
	badRedis := mustAny(t, &redisclusters.RedisClusterConfig{ClusterRefreshRate: durationpb.New(0)})
	for _, c := range []struct {
		name  string
		ctx   networking.EnvoyFilter_PatchContext
		match *networking.EnvoyFilter_ClusterMatch
		op    networking.EnvoyFilter_Patch_Operation
		value *cluster.Cluster
		want  string
	}{
		{"cluster's own rules", networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_MERGE,
			&cluster.Cluster{ConnectTimeout: durationpb.New(-1)}, "ConnectTimeout"},
		{"protocol options inside an Any", networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_MERGE,
			&cluster.Cluster{TypedExtensionProtocolOptions: map[string]*anypb.Any{"x": badTCP}}, "typed_extension_protocol_options[x]"},
		{"cluster type config inside an Any", networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_ADD,
			&cluster.Cluster{Name: "c", ClusterDiscoveryType: &cluster.Cluster_ClusterType{ClusterType: &cluster.Cluster_CustomClusterType{Name: "envoy.clusters.redis", TypedConfig: badRedis}}},
			"cluster_type.typed_config"},
		{"MERGE of every cluster", networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_MERGE,
			&cluster.Cluster{ConnectTimeout: durationpb.New(1e9)}, "every cluster"},
		{"REMOVE of every cluster", networking.EnvoyFilter_SIDECAR_OUTBOUND, &networking.EnvoyFilter_ClusterMatch{PortNumber: 1}, networking.EnvoyFilter_Patch_REMOVE, nil, "every cluster"},
		{"REPLACE", networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_REPLACE,
			&cluster.Cluster{ConnectTimeout: durationpb.New(1e9)}, "ignores"},
		{"ADD without name", networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_ADD,
			&cluster.Cluster{ConnectTimeout: durationpb.New(1e9)}, "without a name"},
		{"MERGE without value", networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_MERGE, nil, "without a value"},
		{"no context", networking.EnvoyFilter_ANY, outboundMatch, networking.EnvoyFilter_Patch_MERGE,
			&cluster.Cluster{ConnectTimeout: durationpb.New(1e9)}, "patch context"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ClusterPatch(c.ctx, c.match, c.op, c.value)
			if !errors.Is(err, generator.ErrInvalidFilter) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want ErrInvalidFilter mentioning %q", err, c.want)
			}
		})
	}
}

// TestValidateClusterValue reads values strictly, as a patch arrives from YAML.
func TestValidateClusterValue(t *testing.T) {
	for name, c := range map[string]struct {
		value map[string]any
		want  string // empty: valid
	}{
		"merge value":   {map[string]any{"connectTimeout": "1s"}, ""},
		"unknown field": {map[string]any{"connectTimeOut": "1s"}, "not an Envoy cluster"},
		"unknown @type": {map[string]any{"typedExtensionProtocolOptions": map[string]any{"x": map[string]any{"@type": "type.googleapis.com/no.such.Type"}}}, "not an Envoy cluster"},
		"invalid inside an Any": {map[string]any{"typedExtensionProtocolOptions": map[string]any{"x": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		}}}, "StatPrefix"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := structpb.NewStruct(c.value)
			if err != nil {
				t.Fatal(err)
			}
			err = ValidateClusterValue(s)
			if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestBuilderAdd(t *testing.T) {
	ctx := &generator.Context{RootNamespace: "root"}
	svc := &model.Service{Name: "s", Namespace: "ns", Hosts: []string{"a.example"}, WorkloadSelector: map[string]string{"app": "s"}}
	port := &model.Port{Number: 6379, TargetPort: 6380}
	p, err := ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, outboundMatch, networking.EnvoyFilter_Patch_REMOVE, nil)
	if err != nil {
		t.Fatal(err)
	}
	newBuilder := func(svc *model.Service) *Builder {
		t.Helper()
		b, err := NewBuilder(ctx, svc, port)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// No outbound EnvoyFilter yet (a service without address): one is made, named as
	// ListenerFilters names it.
	b := newBuilder(svc)
	if err := b.Add(Outbound, p); err != nil {
		t.Fatal(err)
	}
	efs := b.Filters()
	if len(efs) != 1 {
		t.Fatalf("got %v", efs)
	}
	if efs[0].Key() != "root/"+ObjectName(Outbound, "a.example", 6379) || efs[0].Spec.GetWorkloadSelector() != nil || efs[0].Annotations[model.ServiceAnnotation] != "ns/s" {
		t.Errorf("outbound EnvoyFilter %s %v", efs[0].Key(), efs[0].Spec)
	}
	// The next patch joins it; an inbound one goes to the inbound EnvoyFilter.
	if err := b.Add(Outbound, p); err != nil || len(b.Filters()) != 1 || len(b.Filters()[0].Spec.GetConfigPatches()) != 2 {
		t.Fatalf("second outbound patch: %v, %v", b.Filters(), err)
	}
	if err := b.Add(Inbound, p); err != nil || len(b.Filters()) != 2 {
		t.Fatalf("inbound patch: %v, %v", b.Filters(), err)
	}
	if in := b.Filters()[1]; in.Key() != "ns/"+ObjectName(Inbound, "a.example", 6379) || in.Spec.GetWorkloadSelector().GetLabels()["app"] != "s" {
		t.Errorf("inbound EnvoyFilter %s %v", in.Key(), in.Spec)
	}
	// Nothing to add: nothing made.
	b = newBuilder(svc)
	if err := b.Add(Outbound); err != nil || b.Filters() != nil {
		t.Errorf("no patches: %v, %v", b.Filters(), err)
	}
	if err := newBuilder(&model.Service{Hosts: []string{"a"}}).Add(Inbound, p); err == nil {
		t.Error("inbound patch without a workload selector: no error")
	}
	if _, err := NewBuilder(ctx, &model.Service{}, port); err == nil {
		t.Error("builder for a service without hosts: no error")
	}
}
