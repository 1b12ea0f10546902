package patch

import (
	"math"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// toStruct must give exactly what protojson writes: every JSON mapping rule the
// generators' messages can reach, one case each.
func TestToStructIsProtoJSON(t *testing.T) {
	anyOf := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	withAny := func(m proto.Message) *core.TypedExtensionConfig {
		return &core.TypedExtensionConfig{Name: "x", TypedConfig: anyOf(m)}
	}
	meta, err := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"c", true, nil}, "d": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]proto.Message{
		"scalars, enum, wrappers, nested": &cluster.Cluster{
			Name: "c", LbPolicy: cluster.Cluster_MAGLEV, PerConnectionBufferLimitBytes: wrapperspb.UInt32(0),
			ConnectTimeout: durationpb.New(1500 * time.Millisecond),
		},
		"unknown enum number":        &cluster.Cluster{LbPolicy: 99},
		"bytes":                      &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: []byte{0, 1, 254, 255}}},
		"oneof set to its zero":      &core.DataSource{Specifier: &core.DataSource_InlineString{}},
		"map of Structs":             &core.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": meta, "g": {}}},
		"Any of a message":           withAny(&cluster.Cluster{Name: "inner", LbPolicy: cluster.Cluster_RANDOM}),
		"Any of an empty message":    withAny(&cluster.Cluster{}),
		"Any of Empty":               withAny(&emptypb.Empty{}),
		"Any of a float":             withAny(wrapperspb.Float(0.1)),
		"Any of a zero wrapper":      withAny(wrapperspb.Bool(false)),
		"Any of int64":               withAny(wrapperspb.Int64(-1 << 60)),
		"Any of uint64":              withAny(wrapperspb.UInt64(math.MaxUint64)),
		"Any of bytes":               withAny(wrapperspb.Bytes([]byte("\x00hi"))),
		"Any of NaN":                 withAny(wrapperspb.Double(math.NaN())),
		"Any of -Inf":                withAny(wrapperspb.Double(math.Inf(-1))),
		"Any of a negative duration": withAny(durationpb.New(-1500 * time.Millisecond)),
		"Any of microseconds":        withAny(durationpb.New(2*time.Second + 3*time.Microsecond)),
		"Any of nanoseconds":         withAny(durationpb.New(7 * time.Nanosecond)),
		"Any of a Struct":            withAny(meta),
		"Any of a Timestamp":         withAny(timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC))),
		"Any of an Any":              withAny(anyOf(wrapperspb.String("s"))),
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			want := &structpb.Struct{}
			if err := protojson.Unmarshal(raw, want); err != nil {
				t.Fatal(err)
			}
			got, err := toStruct(m)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("differs from protojson (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToStructUnknownAnyType(t *testing.T) {
	m := &core.TypedExtensionConfig{Name: "x", TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}
	if _, err := toStruct(m); err == nil {
		t.Error("no error for an Any of an unknown type")
	}
}
