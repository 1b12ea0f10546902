// Package meshcert_test gets the controller's workload certificate (package pkg/meshcert)
// from a stock istiod's CA on a real kube-apiserver, as the controller will in a pod:
// the mesh root certificate from the ConfigMap istio-ca-root-cert, a ServiceAccount
// token from the TokenRequest API, which istiod checks with a TokenReview.
package meshcert_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"
	"aeraki.io/aeraki/pkg/meshpem"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/wait"

	"aeraki.io/aeraki/pkg/meshcert"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/test/controlplane"
)

const timeout = 60 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(controlplane.EnvBinDir) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set: run `make e2e` or `make test`\n", controlplane.EnvBinDir)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestCertificateFromStockIstiod: with a token of a ServiceAccount of istio-system,
// istiod's CA signs a certificate whose SPIFFE identity is that ServiceAccount's,
// which chains to the mesh root certificate that sidecars trust, for the lifetime
// asked, and serves in a TLS handshake that a sidecar would accept. The identity is
// the token's, whichever namespace it is in. A token for another audience is refused
// with an error that says what istiod wants.
func TestCertificateFromStockIstiod(t *testing.T) {
	ctx := t.Context()
	cp := controlplane.StartForTest(t, controlplane.Options{StockIstiod: true})
	ic, err := cp.IstiodClient(ctx, t.TempDir(), controlplane.IstioNamespace, controlplane.AerakiServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	meshRoots, err := meshpem.LoadRoots(ic.RootCertFile)
	if err != nil {
		t.Fatal(err)
	}
	security := xds.Security{RootCertFile: ic.RootCertFile, ServerName: ic.ServerName, TokenFile: ic.TokenFile}

	t.Run("issued for the ServiceAccount", func(t *testing.T) {
		const ttl = time.Hour
		s := start(t, meshcert.Options{Address: ic.Addr, Security: security, TTL: ttl})
		waitIssued(t, s)
		cert, err := s.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		want := "spiffe://cluster.local/ns/" + controlplane.IstioNamespace + "/sa/" + controlplane.AerakiServiceAccount
		leaf := cert.Leaf
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want || s.Identity() != want {
			t.Errorf("certificate URIs %v, Identity %q; want %s", leaf.URIs, s.Identity(), want)
		}
		intermediates := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			intermediates.AddCert(c)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: meshRoots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("the certificate does not chain to the mesh root from %s for usage %v: %v", controlplane.MeshRootCertConfigMap, usage, err)
			}
		}
		if left := time.Until(leaf.NotAfter); left > ttl || left < ttl-5*time.Minute {
			t.Errorf("certificate valid for %s more, want about the %s asked", left.Round(time.Second), ttl)
		}
		t.Logf("istiod signed %s until %s, issuer %q, chain of %d", s.Identity(), leaf.NotAfter.Format(time.RFC3339), leaf.Issuer, len(cert.Certificate))

		// A sidecar's view: it trusts the mesh root and checks the SPIFFE identity.
		peer := meshcerttest.Handshake(t, &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12}, meshRoots)
		if got := peer.URIs; len(got) != 1 || got[0].String() != want {
			t.Errorf("a TLS client that trusts the mesh root sees URIs %v, want %s", got, want)
		}
	})

	t.Run("identity from the token", func(t *testing.T) {
		token := filepath.Join(t.TempDir(), "istio-token")
		if err := cp.WriteServiceAccountToken(ctx, token, "dubbo", "consumer", controlplane.TokenOptions{}); err != nil {
			t.Fatal(err)
		}
		sec := security
		sec.TokenFile = token
		s := start(t, meshcert.Options{Address: ic.Addr, Security: sec})
		waitIssued(t, s)
		if got, want := s.Identity(), "spiffe://cluster.local/ns/dubbo/sa/consumer"; got != want {
			t.Errorf("identity %q, want %s", got, want)
		}
	})

	t.Run("token of another audience refused", func(t *testing.T) {
		token := filepath.Join(t.TempDir(), "istio-token")
		opts := controlplane.TokenOptions{Audiences: []string{"kubernetes"}}
		if err := cp.WriteServiceAccountToken(ctx, token, controlplane.IstioNamespace, controlplane.AerakiServiceAccount, opts); err != nil {
			t.Fatal(err)
		}
		sec := security
		sec.TokenFile = token
		s := start(t, meshcert.Options{Address: ic.Addr, Security: sec})
		refused := waitFailed(t, s)
		if got := status.Code(refused); got != codes.Unauthenticated {
			t.Errorf("error %v: code %v, want Unauthenticated", refused, got)
		}
		for _, w := range []string{"refused the ServiceAccount token", token, "audience " + controlplane.IstioCAAudience} {
			if !strings.Contains(refused.Error(), w) {
				t.Errorf("error %q lacks %q", refused, w)
			}
		}
		t.Logf("refused: %v", refused)
		if _, err := s.GetCertificate(nil); err == nil || s.Ready() || s.Identity() != "" {
			t.Errorf("a refused Source serves a certificate: GetCertificate %v, ready %v, identity %q", err, s.Ready(), s.Identity())
		}
	})

	// istiod's MAX_WORKLOAD_CERT_TTL is 90 days by default.
	t.Run("lifetime above istiod's maximum refused", func(t *testing.T) {
		s := start(t, meshcert.Options{Address: ic.Addr, Security: security, TTL: 100 * 24 * time.Hour})
		refused := waitFailed(t, s)
		if !strings.Contains(refused.Error(), "greater than the max allowed TTL") {
			t.Errorf("error %q does not say the lifetime is too long", refused)
		}
		t.Logf("refused: %v", refused)
	})
}

// waitFailed waits until a request of s has failed and returns why.
func waitFailed(t *testing.T, s *meshcert.Source) error {
	t.Helper()
	var failed error
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		failed = s.LastError()
		return failed != nil, nil
	})
	if err != nil {
		t.Fatalf("no failed request: %v", err)
	}
	return failed
}

// start runs a Source with opts until the end of t, and checks then that Run
// returned nil.
func start(t *testing.T, opts meshcert.Options) *meshcert.Source {
	t.Helper()
	opts.Logger = testr.New(t)
	opts.InitialBackoff, opts.MaxBackoff = 100*time.Millisecond, time.Second
	s, err := meshcert.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func waitIssued(t *testing.T, s *meshcert.Source) {
	t.Helper()
	select {
	case <-s.Issued():
	case <-time.After(timeout):
		t.Fatalf("no certificate from istiod; last error: %v", s.LastError())
	}
}
