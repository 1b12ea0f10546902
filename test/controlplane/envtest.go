package controlplane

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Envtest is the cheaper control plane for tests that need only the API server: etcd
// and kube-apiserver (envtest, no istiod) on the binaries of `make testbin`, with
// Istio's CRDs and ours installed, shared by the tests of one package. The first test
// that asks for its config starts it, so the tests that do not need it run without
// one; Run, called from TestMain, stops it once every test has run:
//
//	var apiserver controlplane.Envtest
//
//	func TestMain(m *testing.M) { os.Exit(apiserver.Run(m)) }
//
// Its zero value is ready to use.
type Envtest struct {
	// Configure, when set, changes the environment before it starts, for example the
	// API server's flags (env.ControlPlane.GetAPIServer().Configure()).
	Configure func(env *envtest.Environment)

	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

// RestConfig returns a copy of the admin (system:masters) config of the API server,
// starting it on the first call. It fails t if the API server cannot start.
func (e *Envtest) RestConfig(t testing.TB) *rest.Config {
	t.Helper()
	e.once.Do(func() {
		e.env, e.err = newEnvtest()
		if e.err != nil {
			return
		}
		if e.Configure != nil {
			e.Configure(e.env)
		}
		e.cfg, e.err = e.env.Start()
		if e.err != nil {
			e.err = fmt.Errorf("starting envtest: %w", e.err)
		}
	})
	if e.err != nil {
		t.Fatalf("kube-apiserver: %v", e.err)
	}
	return rest.CopyConfig(e.cfg)
}

// Run runs the tests and then stops the API server if one of them started it. It
// returns m.Run's exit code, or 1 if the API server did not stop cleanly.
func (e *Envtest) Run(m *testing.M) int {
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stop stops the API server if a test started it, for a package with more than one
// (Run stops its own).
func (e *Envtest) Stop() error {
	if e.env == nil {
		return nil
	}
	return e.env.Stop()
}

// newEnvtest returns an envtest environment on the binaries of `make testbin`, with
// Istio's CRDs and ours.
func newEnvtest() (*envtest.Environment, error) {
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

// StartForTest starts a control plane with opts for the test t (Logf defaults to
// t.Logf; Options.Istiod adds istiod to etcd and kube-apiserver) and stops it when t
// ends: a process that had died on its own fails t then. It fails t if the control
// plane cannot start. The processes live no longer than t's context.
func StartForTest(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	cp, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	return cp
}
