package controlplane

import (
	"fmt"
	"os"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// NewEnvtest returns an envtest environment (etcd and kube-apiserver, no istiod) on
// the binaries of `make testbin`, with Istio's CRDs and ours installed: the cheaper
// control plane for tests that need only the API server. The caller starts and stops it,
// and may set API server flags before starting.
func NewEnvtest() (*envtest.Environment, error) {
	dir := os.Getenv(EnvBinDir)
	if dir == "" {
		return nil, fmt.Errorf("%s is not set: run the tests with `make test` (or `make testbin` and export what it prints)", EnvBinDir)
	}
	crds, err := IstioCRDs()
	if err != nil {
		return nil, err
	}
	ours, err := AerakiCRDs()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{BinaryAssetsDirectory: dir, CRDs: append(crds, ours...)}, nil
}
