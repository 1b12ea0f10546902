package meshcert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	clocktesting "k8s.io/utils/clock/testing"

	"aeraki.io/aeraki/pkg/xds"
)

const (
	token    = "token-of-aeraki"
	identity = "spiffe://cluster.local/ns/istio-system/sa/aeraki"
	// backoffMax is the tests' MaxBackoff: stepping the clock by twice that fires any
	// retry timer (the backoff randomises up to 1.5 times its interval).
	backoffMax = 4 * time.Second
)

// fixture is a fake CA on a fake clock and the options of a Source that uses it.
type fixture struct {
	clock *clocktesting.FakeClock
	ca    *fakeCA
	opts  Options
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Now())
	ca := startFakeCA(t, clk)
	ca.accept(token, identity)
	return &fixture{clock: clk, ca: ca, opts: Options{
		Address:        ca.addr,
		Security:       ca.clientFiles(t, token),
		InitialBackoff: time.Second,
		MaxBackoff:     backoffMax,
		Logger:         testr.New(t),
		Clock:          clk,
	}}
}

func (f *fixture) source(t *testing.T) *Source {
	t.Helper()
	s, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s until the end of t, and checks then that Run returns nil.
func run(t *testing.T, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v when its context ended, want nil", err)
		}
	})
}

// waitIdle waits until the Source waits on the fake clock: the attempt under way
// (the first, or the one the last Step fired) has ended and its outcome is recorded.
// Only the Source uses the clock's timers.
func (f *fixture) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the Source never waited for its next attempt")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitIssued(t *testing.T, s *Source) {
	t.Helper()
	select {
	case <-s.Issued():
	case <-time.After(30 * time.Second):
		t.Fatalf("no certificate; last error: %v", s.LastError())
	}
}

// TestFirstCertificate: before the first certificate GetCertificate fails and the
// Source is not ready; then it serves istiod's leaf and intermediate (not the root)
// with an in-memory P-256 key, for the identity istiod put in it, and a TLS client
// that trusts the mesh root accepts it. The request carried the token, the default
// lifetime of 24 hours, and no identity of its own.
func TestFirstCertificate(t *testing.T) {
	f := newFixture(t)
	s := f.source(t)
	if _, err := s.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), "no certificate from istiod yet") {
		t.Errorf("GetCertificate before Run: %v, want no certificate yet", err)
	}
	if s.Ready() || s.Identity() != "" || s.LastError() != nil {
		t.Errorf("before Run: Ready %v, Identity %q, LastError %v; want false, empty, nil", s.Ready(), s.Identity(), s.LastError())
	}

	run(t, s)
	waitIssued(t, s)
	cert, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.ca.received()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if want := [][]byte{reqs[0].leafDER, f.ca.ca.inter.Raw}; !slices.EqualFunc(cert.Certificate, want, bytes.Equal) {
		t.Errorf("served chain of %d certificates is not istiod's leaf and intermediate", len(cert.Certificate))
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("private key %T, want ECDSA P-256", cert.PrivateKey)
	}
	if cert.Leaf == nil || !bytes.Equal(cert.Leaf.Raw, reqs[0].leafDER) {
		t.Error("tls.Certificate.Leaf is not the leaf")
	}
	if !s.Ready() || s.Identity() != identity || s.LastError() != nil {
		t.Errorf("after the first certificate: Ready %v, Identity %q, LastError %v; want true, %s, nil", s.Ready(), s.Identity(), s.LastError(), identity)
	}

	if reqs[0].token != token {
		t.Errorf("CA saw token %q, want %q", reqs[0].token, token)
	}
	if want := int64(DefaultTTL / time.Second); reqs[0].ttl != want {
		t.Errorf("requested lifetime %ds, want %ds", reqs[0].ttl, want)
	}
	if csr := reqs[0].csr; len(csr.URIs)+len(csr.DNSNames) != 0 || csr.Subject.String() != "" {
		t.Errorf("the request claims subject %q, URIs %v, DNS names %v; want none (istiod takes the token's)", csr.Subject, csr.URIs, csr.DNSNames)
	}

	// A sidecar's view: TLS to a server with this GetCertificate, verified against the
	// mesh root, shows the SPIFFE identity.
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.ca.root)
	peer := meshcerttest.Handshake(t, &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12}, roots)
	if got := peer.URIs; len(got) != 1 || got[0].String() != identity {
		t.Errorf("server certificate in a handshake has URIs %v, want %s", got, identity)
	}
}

// TestRenewsAtHalfOfRemainingLifetime: the Source asks again when half of the
// lifetime its certificate had left on arrival has passed, not a second sooner, with
// a new key; the lifetime is the one istiod signed, which may be less than asked.
func TestRenewsAtHalfOfRemainingLifetime(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ttl         time.Duration // asked for
		maxLifetime time.Duration // istiod's cap; 0 none
		renewAfter  time.Duration
	}{
		{"lifetime asked", 10 * time.Hour, 0, 5 * time.Hour},
		{"shorter lifetime signed", 0, 2 * time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.opts.TTL = tc.ttl
			f.ca.set(func(ca *fakeCA) { ca.maxLifetime = tc.maxLifetime })
			s := f.source(t)
			run(t, s)
			waitIssued(t, s)
			f.waitIdle(t)
			first, err := s.GetCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}

			for round := 1; round <= 2; round++ {
				f.clock.Step(tc.renewAfter - time.Second)
				if !f.clock.HasWaiters() || len(f.ca.received()) != round {
					t.Fatalf("round %d: renewed %s before half of the remaining lifetime", round, time.Second)
				}
				f.clock.Step(time.Second)
				f.waitIdle(t)
				if n := len(f.ca.received()); n != round+1 {
					t.Fatalf("round %d: %d requests after half of the remaining lifetime, want %d", round, n, round+1)
				}
			}
			renewed, err := s.GetCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(renewed.Leaf.Raw, first.Leaf.Raw) {
				t.Error("GetCertificate still returns the first certificate")
			}
			if renewed.PrivateKey.(*ecdsa.PrivateKey).Equal(first.PrivateKey) {
				t.Error("the renewed certificate reuses the first key")
			}
		})
	}
}

// TestRetriesFailures: failed requests are retried with backoff, each logged once
// with its reason and kept as LastError (GetCertificate says it too); the first
// success clears it and is logged with identity and expiry.
func TestRetriesFailures(t *testing.T) {
	f := newFixture(t)
	logs := &captured{}
	f.opts.Logger = logs.logger()
	f.ca.set(func(ca *fakeCA) {
		ca.failures = []error{status.Error(codes.Unavailable, "CA not ready"), status.Error(codes.Internal, "signing failed")}
	})
	s := f.source(t)
	run(t, s)

	for _, reason := range []string{"CA not ready", "signing failed"} {
		f.waitIdle(t)
		if err := s.LastError(); err == nil || !strings.Contains(err.Error(), reason) || !strings.Contains(err.Error(), f.ca.addr) {
			t.Fatalf("LastError %v, want %q and istiod's address", err, reason)
		}
		if _, err := s.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("GetCertificate: %v, want the reason %q", err, reason)
		}
		if s.Ready() {
			t.Error("ready without a certificate")
		}
		f.clock.Step(2 * backoffMax)
	}
	waitIssued(t, s)
	f.waitIdle(t)
	if err := s.LastError(); err != nil {
		t.Errorf("LastError %v after a success", err)
	}
	if n := len(f.ca.received()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}

	lines := logs.lines()
	var failures, issued []string
	for _, l := range lines {
		switch {
		case strings.Contains(l, `"msg"="certificate request failed"`):
			failures = append(failures, l)
		case strings.Contains(l, `"msg"="certificate issued"`):
			issued = append(issued, l)
		}
	}
	if len(failures) != 2 || !strings.Contains(failures[0], "CA not ready") || !strings.Contains(failures[1], "signing failed") {
		t.Errorf("failure lines %q, want one per failed request with its reason", failures)
	}
	if len(issued) != 1 || !strings.Contains(issued[0], `"identity"="`+identity+`"`) || !strings.Contains(issued[0], `"expires"=`) {
		t.Errorf("issuance lines %q, want one with identity and expiry", issued)
	}
	for _, l := range issued {
		if !strings.Contains(l, `"level"=0`) {
			t.Errorf("issuance logged at %q, want V(0)", l)
		}
	}
}

// TestFailedRenewalKeepsCertificate: while renewals fail the current certificate is
// still served; once it expires GetCertificate fails saying so and why, and the
// Source is no longer ready.
func TestFailedRenewalKeepsCertificate(t *testing.T) {
	f := newFixture(t)
	f.opts.TTL = time.Hour
	s := f.source(t)
	run(t, s)
	waitIssued(t, s)
	f.waitIdle(t)
	first, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}

	f.ca.set(func(ca *fakeCA) { ca.down = status.Error(codes.Unavailable, "istiod is gone") })
	f.clock.Step(30 * time.Minute)
	f.waitIdle(t)
	if err := s.LastError(); err == nil || !strings.Contains(err.Error(), "istiod is gone") {
		t.Fatalf("LastError %v after a failed renewal", err)
	}
	got, err := s.GetCertificate(nil)
	if err != nil || got != first || !s.Ready() {
		t.Fatalf("after a failed renewal: GetCertificate %v, ready %v; want the first certificate, ready", err, s.Ready())
	}

	// Past its expiry: the certificate is not served.
	for f.clock.Now().Before(first.Leaf.NotAfter) {
		f.clock.Step(2 * backoffMax)
		f.waitIdle(t)
	}
	_, err = s.GetCertificate(nil)
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "istiod is gone") || !strings.Contains(err.Error(), identity) {
		t.Errorf("GetCertificate after expiry: %v, want the identity, expired, and why", err)
	}
	if s.Ready() {
		t.Error("ready with an expired certificate")
	}

	// istiod back: a new certificate.
	f.ca.set(func(ca *fakeCA) { ca.down = nil })
	f.clock.Step(2 * backoffMax)
	f.waitIdle(t)
	if _, err := s.GetCertificate(nil); err != nil || !s.Ready() {
		t.Errorf("after istiod came back: %v, ready %v", err, s.Ready())
	}
}

// TestFailuresAreExplained: each way a request fails on our side or is refused by
// istiod is reported by LastError with what to look at.
func TestFailuresAreExplained(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		code  codes.Code
		want  []string
	}{
		{"token refused", func(t *testing.T, f *fixture) { writeFile(t, f.opts.Security.TokenFile, "token-of-nobody") },
			codes.Unauthenticated, []string{"refused the ServiceAccount token", "audience istio-ca", "request authenticate failure"}},
		{"token missing", func(t *testing.T, f *fixture) { removeFile(t, f.opts.Security.TokenFile) },
			codes.Unavailable, []string{"reading the token"}},
		{"root of another mesh", func(t *testing.T, f *fixture) {
			writeFile(t, f.opts.Security.RootCertFile, pemOf(newTestCA(t, "other").root))
		}, codes.Unavailable, []string{"x509"}},
		{"istiod not listening", func(t *testing.T, f *fixture) {
			addr, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f.opts.Address = addr.Addr().String()
			_ = addr.Close()
		}, codes.Unavailable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(t, f)
			s := f.source(t)
			run(t, s)
			f.waitIdle(t)
			err := s.LastError()
			if got := status.Code(err); got != tc.code {
				t.Errorf("LastError %v: code %v, want %v", err, got, tc.code)
			}
			for _, w := range append(tc.want, f.opts.Address) {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("LastError %v lacks %q", err, w)
				}
			}
			if tc.name == "token refused" && !strings.Contains(err.Error(), f.opts.Security.TokenFile) {
				t.Errorf("LastError %v does not name the token file", err)
			}
		})
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestRunEndsWithContext: Run returns nil when its context ends during a request
// that istiod does not answer, and while it waits to retry.
func TestRunEndsWithContext(t *testing.T) {
	t.Run("during a request", func(t *testing.T) {
		f := newFixture(t)
		f.ca.set(func(ca *fakeCA) { ca.hang = true })
		s := f.source(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for len(f.ca.received()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
		if s.LastError() != nil {
			t.Errorf("LastError %v: a canceled request is no failure", s.LastError())
		}
	})
	t.Run("waiting to retry", func(t *testing.T) {
		f := newFixture(t)
		f.ca.set(func(ca *fakeCA) { ca.down = status.Error(codes.Unavailable, "down") })
		s := f.source(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		f.waitIdle(t)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
		if err := s.Run(context.Background()); err == nil {
			t.Error("a second Run did not fail")
		}
	})
}

func TestNewRefuses(t *testing.T) {
	sec := xds.Security{RootCertFile: "/r.pem", TokenFile: "/t"}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no address", Options{Security: sec}, "no istiod address"},
		{"plaintext", Options{Address: "localhost:15010", Security: xds.Security{Plaintext: true}}, "not plaintext"},
		{"negative lifetime", Options{Address: "istiod:15012", Security: sec, TTL: -time.Hour}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// captured keeps the lines of a logger.
type captured struct {
	mu  sync.Mutex
	out []string
}

func (c *captured) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.out = append(c.out, fmt.Sprintf("%s %s", prefix, args))
	}, funcr.Options{Verbosity: 1, LogTimestamp: false})
}

func (c *captured) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.out)
}
