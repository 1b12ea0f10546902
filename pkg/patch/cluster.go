package patch

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
)

// CLUSTER patches, as istiod (1.31) applies them
// (pilot/pkg/networking/core/envoyfilter/cluster_patch.go):
//   - MERGE merges the value into every matching cluster with proto merge semantics:
//     scalars and messages are overwritten field by field, maps by key, and repeated
//     fields are APPENDED. Setting one member of a oneof clears the others.
//   - MERGE_AND_REPLACE_LIST (istiod 1.31 and later) is MERGE, except that a list the
//     value sets replaces the cluster's list, at any depth.
//   - ADD appends the value as a new cluster; no other patch touches it.
//   - REMOVE drops the matching clusters.
//   - REPLACE and the INSERT_* operations are not implemented for clusters: istiod
//     ignores them without a word.
//
// A match without cluster.name or cluster.service would hit every cluster of the
// proxy, so ClusterPatch refuses it.

// ClusterPatch returns a CLUSTER patch: operation op of value (a partial cluster for
// MERGE and MERGE_AND_REPLACE_LIST, a whole one for ADD, nil for REMOVE) on the
// clusters match selects in patch context pctx. The value is validated (see
// ValidateClusterValue); an invalid one wraps generator.ErrInvalidFilter.
func ClusterPatch(pctx networking.EnvoyFilter_PatchContext, match *networking.EnvoyFilter_ClusterMatch,
	op networking.EnvoyFilter_Patch_Operation, value *cluster.Cluster,
) (*networking.EnvoyFilter_EnvoyConfigObjectPatch, error) {
	p := &networking.EnvoyFilter_EnvoyConfigObjectPatch{
		ApplyTo: networking.EnvoyFilter_CLUSTER,
		Match:   &networking.EnvoyFilter_EnvoyConfigObjectMatch{Context: pctx},
		Patch:   &networking.EnvoyFilter_Patch{Operation: op},
	}
	if match != nil {
		p.Match.ObjectTypes = &networking.EnvoyFilter_EnvoyConfigObjectMatch_Cluster{Cluster: match}
	}
	if value != nil {
		s, err := ClusterValue(value)
		if err != nil {
			return nil, err
		}
		p.Patch.Value = s
	}
	if err := ValidateClusterPatch(p); err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	return p, nil
}

// ClusterValue turns a (partial) cluster into a CLUSTER patch value, after checking
// it the way Envoy will (see ValidateClusterValue).
func ClusterValue(c *cluster.Cluster) (*structpb.Struct, error) {
	if err := validateCluster(c); err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	s, err := toStruct(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	return s, nil
}

// ValidateClusterValue checks a CLUSTER patch value: strict JSON into Envoy's Cluster
// type (unknown fields and unknown @types fail), then the protoc-gen-validate rules of
// the cluster and of every typed config inside it, at any depth
// (typed_extension_protocol_options values, cluster_type.typed_config, transport
// sockets...). istiod drops a value it cannot convert without telling anyone.
func ValidateClusterValue(value *structpb.Struct) error {
	c := &cluster.Cluster{}
	if err := fromStruct(value, c, "an Envoy cluster"); err != nil {
		return err
	}
	return validateCluster(c)
}

// ValidateClusterPatch checks a CLUSTER patch as a whole: an operation istiod applies
// to clusters, a value for every operation but REMOVE (and none for REMOVE), a
// cluster match naming the cluster or its service for the operations that change
// existing clusters, and a valid value.
func ValidateClusterPatch(p *networking.EnvoyFilter_EnvoyConfigObjectPatch) error {
	if p.GetApplyTo() != networking.EnvoyFilter_CLUSTER {
		return fmt.Errorf("applyTo is %v, not CLUSTER", p.GetApplyTo())
	}
	op := p.GetPatch().GetOperation()
	switch op {
	case networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST,
		networking.EnvoyFilter_Patch_REMOVE:
		m := p.GetMatch().GetCluster()
		if m.GetName() == "" && m.GetService() == "" {
			return fmt.Errorf("%v names neither a cluster nor a service (match.cluster): it would apply to every cluster", op)
		}
	case networking.EnvoyFilter_Patch_ADD:
		if p.GetPatch().GetValue().GetFields()["name"].GetStringValue() == "" {
			return errors.New("ADD of a cluster without a name")
		}
	default:
		return fmt.Errorf("operation %v: istiod applies only MERGE, MERGE_AND_REPLACE_LIST, ADD and REMOVE to clusters and ignores the rest", op)
	}
	if p.GetMatch().GetContext() == networking.EnvoyFilter_ANY {
		return errors.New("no patch context: say SIDECAR_OUTBOUND or SIDECAR_INBOUND")
	}
	if op == networking.EnvoyFilter_Patch_REMOVE {
		if p.GetPatch().GetValue() != nil {
			return errors.New("REMOVE with a value")
		}
		return nil
	}
	if p.GetPatch().GetValue() == nil {
		return fmt.Errorf("%v without a value", op)
	}
	return ValidateClusterValue(p.GetPatch().GetValue())
}

// validateCluster validates a cluster; one without a name is a MERGE value, which
// takes the name of the cluster it merges into.
func validateCluster(c *cluster.Cluster) error {
	if c.GetName() == "" {
		c = proto.Clone(c).(*cluster.Cluster)
		c.Name = "merged"
	}
	if err := c.ValidateAll(); err != nil {
		return fmt.Errorf("invalid cluster: %w", err)
	}
	return validateTyped(c.ProtoReflect(), "cluster")
}

// validateTyped runs the validation rules of every typed config (google.protobuf.Any)
// found in m, at any depth: ValidateAll does not look inside an Any.
func validateTyped(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		at := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			var keys []protoreflect.MapKey
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			// Sorted, so that the first error is the same every time.
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
			for _, k := range keys {
				if err = validateMessage(v.Map().Get(k).Message(), at+"["+k.String()+"]"); err != nil {
					return false
				}
			}
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			for i := range v.List().Len() {
				if err = validateMessage(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return false
				}
			}
		case fd.Message() != nil:
			err = validateMessage(v.Message(), at)
		}
		return err == nil
	})
	return err
}

// validateMessage unpacks m when it is an Any and validates what is inside, then
// looks for Anys further down.
func validateMessage(m protoreflect.Message, path string) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return validateTyped(m, path)
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if v, ok := inner.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("invalid %s (%s): %w", path, a.GetTypeUrl(), err)
		}
	}
	return validateTyped(inner.ProtoReflect(), path)
}
