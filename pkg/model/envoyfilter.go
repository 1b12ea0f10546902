package model

import (
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
	Spec        *networking.EnvoyFilter
	// ResourceVersion and UID identify the object in the cluster; empty for a desired
	// (generated) EnvoyFilter.
	ResourceVersion string
	UID             string
}

// Key is namespace/name.
func (e *EnvoyFilter) Key() string { return e.Namespace + "/" + e.Name }

// MaxEnvoyFilterBytes bounds the JSON of an EnvoyFilter we write: etcd stores objects
// of about 1.5 MiB at most, and a larger write would fail on every push.
const MaxEnvoyFilterBytes = 1 << 20

// CheckSize fails when the EnvoyFilter's JSON is larger than MaxEnvoyFilterBytes.
// The binary size is a cheap first look: JSON is not four times larger than it.
func (e *EnvoyFilter) CheckSize() error {
	if proto.Size(e.Spec) <= MaxEnvoyFilterBytes/4 {
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
	if e.Name != o.Name || e.Namespace != o.Namespace || !proto.Equal(e.Spec, o.Spec) {
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

// Clone returns a deep copy.
func (e *EnvoyFilter) Clone() *EnvoyFilter {
	return &EnvoyFilter{
		Name:        e.Name,
		Namespace:   e.Namespace,
		Labels:      maps.Clone(e.Labels),
		Annotations: maps.Clone(e.Annotations),
		Spec:        proto.Clone(e.Spec).(*networking.EnvoyFilter),
	}
}

// Document returns the EnvoyFilter as a Kubernetes document (apiVersion, kind,
// metadata, spec) in JSON, with nothing the server sets.
func (e *EnvoyFilter) Document() ([]byte, error) {
	spec, err := protojson.Marshal(e.Spec)
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
