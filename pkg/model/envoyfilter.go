package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"

	"google.golang.org/protobuf/encoding/protojson"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Labels and annotations this project puts on the EnvoyFilters it manages.
const (
	// ManagedByLabel and StandardManagedByLabel (the Kubernetes recommended label),
	// both with ManagedByValue, mark our EnvoyFilters: only objects with both are ever
	// changed or deleted (see Managed).
	ManagedByLabel         = "manager"
	ManagedByValue         = "aeraki"
	StandardManagedByLabel = "app.kubernetes.io/managed-by"
	// ServiceAnnotation names the service (namespace/name) an EnvoyFilter was generated
	// for, so that a service whose generation fails keeps its filters.
	ServiceAnnotation = "aeraki.io/service"
)

// EnvoyFilterAPIVersion is the API version EnvoyFilters are written in.
const EnvoyFilterAPIVersion = "networking.istio.io/v1alpha3"

// EnvoyFilter is a generated Istio EnvoyFilter. Its identity is Namespace/Name.
type EnvoyFilter struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
	// Spec is nil while the spec is packed (see Pack), or, for a filter in the
	// cluster as the cache keeps it, while only its digest is known (SpecDigest):
	// read it with SpecProto.
	Spec *networking.EnvoyFilter
	// packed is the spec while Spec is nil, as deterministic binary protobuf.
	packed []byte
	// SpecDigest identifies the spec of a filter in the cluster that the cache keeps
	// without it (see SpecDigestAnnotation); empty otherwise.
	SpecDigest string
	// ResourceVersion and UID identify the object in the cluster; empty for a desired
	// (generated) EnvoyFilter.
	ResourceVersion string
	UID             string
}

// SpecDigestAnnotation holds, on the cache's copies of our EnvoyFilters only, the
// digest of the spec they are kept without (see SpecDigest): the controller only
// compares them with what it wants, and a spec of Struct values is the larger part
// of an EnvoyFilter's memory. It is never written to the apiserver.
const SpecDigestAnnotation = "aeraki.io/spec-digest"

// SpecDigest is a digest of an EnvoyFilter spec: equal specs have equal digests.
func SpecDigest(spec *networking.EnvoyFilter) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return ""
	}
	return digestOf(b)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Pack keeps the spec in a compact form (Spec is then nil): a translator holds every
// desired filter from one push to the next, and a spec of Struct patch values takes
// several times more memory as Go values than encoded.
func (e *EnvoyFilter) Pack() error {
	if e.Spec == nil {
		return nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.Spec)
	if err != nil {
		return fmt.Errorf("EnvoyFilter %s: %w", e.Key(), err)
	}
	e.packed, e.Spec = b, nil
	return nil
}

// SpecProto returns the spec: Spec, or the packed one decoded afresh (not kept; the
// caller may change it). nil for a filter known only by its digest.
func (e *EnvoyFilter) SpecProto() *networking.EnvoyFilter {
	if e.Spec != nil || e.packed == nil {
		return e.Spec
	}
	spec := &networking.EnvoyFilter{}
	if err := proto.Unmarshal(e.packed, spec); err != nil {
		// Our own encoding of a valid message: it always decodes.
		panic(fmt.Sprintf("EnvoyFilter %s: decoding its packed spec: %v", e.Key(), err))
	}
	return spec
}

// Digest returns the digest of the spec (see SpecDigest).
func (e *EnvoyFilter) Digest() string {
	switch {
	case e.Spec != nil:
		return SpecDigest(e.Spec)
	case e.packed != nil:
		return digestOf(e.packed)
	}
	return e.SpecDigest
}

// SameSpec reports whether o has the same spec as e.
func (e *EnvoyFilter) SameSpec(o *EnvoyFilter) bool {
	switch {
	case e.packed != nil && o.packed != nil:
		return bytes.Equal(e.packed, o.packed)
	case e.Spec != nil && o.Spec != nil:
		return proto.Equal(e.Spec, o.Spec)
	}
	return e.Digest() == o.Digest()
}

// Unpacked returns e with its spec as Spec.
func (e *EnvoyFilter) Unpacked() *EnvoyFilter {
	if e.packed == nil {
		return e
	}
	out := *e
	out.Spec, out.packed = e.SpecProto(), nil
	return &out
}

// Trimmed returns e as the cache keeps a filter in the cluster: its digest in place
// of its spec.
func (e *EnvoyFilter) Trimmed() *EnvoyFilter {
	out := *e
	out.SpecDigest, out.Spec, out.packed = e.Digest(), nil, nil
	return &out
}

// Key is namespace/name.
func (e *EnvoyFilter) Key() string { return e.Namespace + "/" + e.Name }

// MaxEnvoyFilterBytes bounds the JSON of an EnvoyFilter we write: etcd stores objects
// of about 1.5 MiB at most, and a larger write would fail on every push.
const MaxEnvoyFilterBytes = 1 << 20

// CheckSize fails when the EnvoyFilter's JSON is larger than MaxEnvoyFilterBytes.
// The binary size is a cheap first look: JSON is not four times larger than it.
func (e *EnvoyFilter) CheckSize() error {
	if proto.Size(e.SpecProto()) <= MaxEnvoyFilterBytes/4 {
		return nil
	}
	doc, err := e.Document()
	if err != nil {
		return err
	}
	if len(doc) > MaxEnvoyFilterBytes {
		return fmt.Errorf("EnvoyFilter %s would be %d bytes, more than the %d the apiserver can store", e.Key(), len(doc), MaxEnvoyFilterBytes)
	}
	return nil
}

// ManagedLabels are the labels every generated EnvoyFilter carries.
func ManagedLabels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, StandardManagedByLabel: ManagedByValue}
}

// Managed reports whether an object's labels mark it as ours: both of
// ManagedLabels, so that another controller's EnvoyFilters labelled `manager:
// aeraki` alone (upstream Aeraki's, during a switch) are never ours to change.
func Managed(labels map[string]string) bool {
	for k, v := range ManagedLabels() {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// UpToDate reports whether current matches e, the desired EnvoyFilter, in what we own:
// the spec, our labels and our annotations. Labels and annotations others added to
// current do not count.
func (e *EnvoyFilter) UpToDate(o *EnvoyFilter) bool {
	if e.Name != o.Name || e.Namespace != o.Namespace || !e.SameSpec(o) {
		return false
	}
	return subsetEqual(e.Labels, o.Labels) && subsetEqual(e.Annotations, o.Annotations)
}

// subsetEqual reports whether every key of want has the same value in got.
func subsetEqual(want, got map[string]string) bool {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return false
		}
	}
	return true
}

// Clone returns a deep copy (a packed spec is shared: it is never changed).
func (e *EnvoyFilter) Clone() *EnvoyFilter {
	out := &EnvoyFilter{
		Name:        e.Name,
		Namespace:   e.Namespace,
		Labels:      maps.Clone(e.Labels),
		Annotations: maps.Clone(e.Annotations),
		packed:      e.packed,
		SpecDigest:  e.SpecDigest,
	}
	if e.Spec != nil {
		out.Spec = proto.Clone(e.Spec).(*networking.EnvoyFilter)
	}
	return out
}

// Document returns the EnvoyFilter as a Kubernetes document (apiVersion, kind,
// metadata, spec) in JSON, with nothing the server sets.
func (e *EnvoyFilter) Document() ([]byte, error) {
	spec, err := protojson.Marshal(e.SpecProto())
	if err != nil {
		return nil, fmt.Errorf("EnvoyFilter %s: %w", e.Key(), err)
	}
	doc, err := json.Marshal(document{
		APIVersion: EnvoyFilterAPIVersion,
		Kind:       "EnvoyFilter",
		Metadata:   documentMeta{Name: e.Name, Namespace: e.Namespace, Labels: e.Labels, Annotations: e.Annotations},
		Spec:       spec,
	})
	if err != nil {
		return nil, fmt.Errorf("EnvoyFilter %s: %w", e.Key(), err)
	}
	return doc, nil
}

type document struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   documentMeta    `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type documentMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
