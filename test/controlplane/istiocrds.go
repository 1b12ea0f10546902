package controlplane

import (
	"fmt"
	"io/fs"

	istiomanifests "istio.io/istio/manifests"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"aeraki.io/aeraki/k8s/crds"
)

// IstioCRDs returns Istio's CRDs, for tests that start envtest rather than Start.
func IstioCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := fs.ReadFile(istiomanifests.FS, istioCRDs)
	if err != nil {
		return nil, fmt.Errorf("read Istio CRDs from the istio module: %w", err)
	}
	return decodeCRDs(data)
}

// AerakiCRDs returns our own CRDs, as `make generate` wrote them.
func AerakiCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := fs.ReadFile(crds.FS, f)
		if err != nil {
			return nil, err
		}
		decoded, err := decodeCRDs(data)
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", f, err)
		}
		out = append(out, decoded...)
	}
	return out, nil
}
