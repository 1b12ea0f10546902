package controlplane

import (
	"fmt"
	"io/fs"

	istiomanifests "istio.io/istio/manifests"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// IstioCRDs returns Istio's CRDs, for tests that start envtest rather than Start.
func IstioCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := fs.ReadFile(istiomanifests.FS, istioCRDs)
	if err != nil {
		return nil, fmt.Errorf("read Istio CRDs from the istio module: %w", err)
	}
	return decodeCRDs(data)
}
