// Package meshcert keeps the controller's own Istio workload certificate: an X.509
// certificate signed by the mesh's CA for the controller's Kubernetes ServiceAccount,
// with its SPIFFE identity (spiffe://<trust domain>/ns/<namespace>/sa/<name>).
//
// Why: sidecars connect to an xDS server only over TLS, verify the server's
// certificate against the mesh root certificate, and expect a SPIFFE identity in it.
// A controller that serves xDS to sidecars therefore needs what istio-agent gives every
// sidecar: a certificate of the mesh CA for its identity, kept fresh.
//
// Where from: istiod's CA (IstioCertificateService.CreateCertificate), served on
// istiod's TLS port (15012) next to xDS. The Source connects there as the config
// watcher does (xds.Security: istiod verified against the mesh root certificate, the
// pod's projected ServiceAccount token with audience istio-ca as "authorization:
// Bearer" on every call). istiod checks the token with a TokenReview and signs the
// public key of the request for the token's identity, whatever the request says
// (CreateCertificate in istio's security/pkg/server/ca/server.go), so the request
// carries only the public key. The key pair (ECDSA P-256) is made in memory for each
// certificate and never written anywhere.
//
// When: once at start, then again when half of the lifetime the certificate had left
// on arrival has passed, as istio-agent does by default (SECRET_GRACE_PERIOD_RATIO
// 0.5, without its 1% jitter: one controller does not make a fleet). The lifetime
// asked for is 24 hours by default, istio-agent's SECRET_TTL. A failed request is
// retried with exponential backoff until one succeeds; meanwhile the current
// certificate is served until it expires.
package meshcert

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	"k8s.io/utils/clock"

	"aeraki.io/aeraki/pkg/xds"
)

const (
	// DefaultTTL is the lifetime asked for when Options.TTL is zero: istio-agent's
	// SECRET_TTL.
	DefaultTTL = 24 * time.Hour
	// DefaultInitialBackoff is the first wait after a failed request when
	// Options.InitialBackoff is zero.
	DefaultInitialBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between failed requests when
	// Options.MaxBackoff is zero.
	DefaultMaxBackoff = 30 * time.Second
)

const (
	// renewRatio is the part of the lifetime left on arrival after which a
	// certificate is renewed: istio-agent's SECRET_GRACE_PERIOD_RATIO.
	renewRatio = 0.5
	// requestTimeout bounds one request to istiod, so that an istiod that accepts the
	// connection and never answers does not hold up the retries.
	requestTimeout = 30 * time.Second
	// tokenAudience is the audience istiod demands of the token (TOKEN_AUDIENCES).
	tokenAudience = "istio-ca"
)

// Options configure a Source.
type Options struct {
	// Address is host:port of istiod's TLS gRPC port, which serves its CA next to xDS
	// (a stock install's istiod.istio-system.svc:15012).
	Address string
	// Security says how istiod is verified and which token is sent, with the config
	// watcher's defaults. It must not be Plaintext: istiod's CA needs an identity, and
	// a token never travels in plaintext.
	Security xds.Security
	// TTL is the lifetime asked for (default DefaultTTL). istiod refuses more than its
	// MAX_WORKLOAD_CERT_TTL (90 days by default) and may sign for less, never more
	// than its own signing certificate has left; renewal follows the certificate it
	// signs, not the request.
	TTL time.Duration
	// InitialBackoff and MaxBackoff bound the exponential backoff between failed
	// requests, which are retried for ever (defaults DefaultInitialBackoff and
	// DefaultMaxBackoff). A certificate is never renewed sooner than InitialBackoff
	// after the previous one arrived.
	InitialBackoff, MaxBackoff time.Duration
	// Logger receives a line for each certificate issued and each failed request.
	Logger logr.Logger
	// Clock tells the time for the renewal and expiry; nil means the real one.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	o.TTL = cmp.Or(o.TTL, DefaultTTL)
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.InitialBackoff)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Source obtains the controller's certificate from istiod's CA and renews it while
// Run runs. Its methods may be called from any goroutine.
type Source struct {
	opts Options
	log  logr.Logger

	started atomic.Bool
	// current is the latest certificate, nil until the first arrives.
	current atomic.Pointer[certificate]
	// issued is closed when the first certificate arrives.
	issued     chan struct{}
	issuedOnce sync.Once

	mu      sync.Mutex
	lastErr error // of the latest request; nil after a success
}

// certificate is one certificate from istiod with what is served of it.
type certificate struct {
	tls      *tls.Certificate
	identity string
	notAfter time.Time
}

// New returns a Source for opts; it requests nothing until Run.
func New(opts Options) (*Source, error) {
	if opts.Address == "" {
		return nil, errors.New("meshcert: no istiod address")
	}
	if opts.Security.Plaintext {
		return nil, errors.New("meshcert: istiod's CA needs TLS and a ServiceAccount token, not plaintext")
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("meshcert: negative certificate lifetime %s", opts.TTL)
	}
	opts = opts.withDefaults()
	return &Source{
		opts:   opts,
		log:    opts.Logger.WithName("meshcert"),
		issued: make(chan struct{}),
	}, nil
}

// Run obtains a certificate and renews it until ctx is done, retrying failed requests
// with backoff; it returns nil then. It returns an error only if it cannot start, and
// may be called once.
func (s *Source) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("meshcert: Run called more than once")
	}
	conn, err := grpc.NewClient(s.opts.Address, s.opts.Security.DialOptions(s.opts.Address)...)
	if err != nil {
		return fmt.Errorf("meshcert: creating a gRPC client of istiod at %s: %w", s.opts.Address, err)
	}
	defer func() { _ = conn.Close() }()
	client := pb.NewIstioCertificateServiceClient(conn)

	retry := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.opts.InitialBackoff),
		backoff.WithMaxInterval(s.opts.MaxBackoff),
		backoff.WithMaxElapsedTime(0), // never backoff.Stop
	)
	for {
		cert, err := s.request(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			wait = retry.NextBackOff()
			s.setResult(nil, err)
			s.log.Error(err, "certificate request failed", "address", s.opts.Address, "retryIn", wait)
		} else {
			retry.Reset()
			wait = s.renewDelay(cert)
			s.setResult(cert, nil)
			s.log.Info("certificate issued", "identity", cert.identity, "expires", cert.notAfter, "renewIn", wait)
		}
		if !s.sleep(ctx, wait) {
			return nil
		}
	}
}

// renewDelay is how long to keep cert: renewRatio of the lifetime it has left now,
// at least InitialBackoff, so that short-lived certificates do not make a hot loop.
func (s *Source) renewDelay(cert *certificate) time.Duration {
	left := cert.notAfter.Sub(s.opts.Clock.Now())
	return max(time.Duration(renewRatio*float64(left)), s.opts.InitialBackoff)
}

// sleep waits for d on the clock; false if ctx ended first.
func (s *Source) sleep(ctx context.Context, d time.Duration) bool {
	timer := s.opts.Clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
		return true
	}
}

// request makes a new key and asks istiod to sign it.
func (s *Source) request(ctx context.Context, client pb.IstioCertificateServiceClient) (*certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	// No subject, no SAN: istiod signs for the token's identity, not the request's.
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the certificate request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		ValidityDuration: int64(s.opts.TTL / time.Second),
	})
	if err != nil {
		return nil, s.explain(err)
	}
	cert, err := parseChain(resp.GetCertChain(), key, s.opts.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("istiod at %s signed an unusable certificate: %w", s.opts.Address, err)
	}
	return cert, nil
}

// explain wraps a failed request with what it means.
func (s *Source) explain(err error) error {
	if status.Code(err) == codes.Unauthenticated {
		return fmt.Errorf("istiod at %s refused the ServiceAccount token in %s (it needs a current token "+
			"with audience %s, as projected into the pod): %w",
			s.opts.Address, cmp.Or(s.opts.Security.TokenFile, xds.DefaultTokenFile), tokenAudience, err)
	}
	return fmt.Errorf("requesting a certificate from istiod at %s: %w", s.opts.Address, err)
}

func (s *Source) setResult(cert *certificate, err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if cert != nil {
		s.current.Store(cert)
		s.issuedOnce.Do(func() { close(s.issued) })
	}
}

// GetCertificate returns the current certificate with its chain (the leaf and the
// intermediates istiod returned, not the root), for tls.Config.GetCertificate. It
// fails until the first certificate arrives, and once the current one has expired.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := s.current.Load()
	if cert == nil {
		if err := s.LastError(); err != nil {
			return nil, fmt.Errorf("meshcert: no certificate from istiod yet: %w", err)
		}
		return nil, errors.New("meshcert: no certificate from istiod yet")
	}
	if !s.opts.Clock.Now().Before(cert.notAfter) {
		expired := fmt.Errorf("meshcert: the certificate of %s expired at %s and istiod has not renewed it",
			cert.identity, cert.notAfter.Format(time.RFC3339))
		if err := s.LastError(); err != nil {
			return nil, fmt.Errorf("%w: %w", expired, err)
		}
		return nil, expired
	}
	return cert.tls, nil
}

// Ready reports whether a certificate is held and has not expired.
func (s *Source) Ready() bool {
	cert := s.current.Load()
	return cert != nil && s.opts.Clock.Now().Before(cert.notAfter)
}

// Issued is closed when the first certificate arrives.
func (s *Source) Issued() <-chan struct{} { return s.issued }

// Identity returns the SPIFFE ID of the current certificate
// (spiffe://cluster.local/ns/<namespace>/sa/<name>), "" before the first.
func (s *Source) Identity() string {
	if cert := s.current.Load(); cert != nil {
		return cert.identity
	}
	return ""
}

// LastError returns why the latest request failed; nil before the first request
// ends and after one succeeds.
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}
