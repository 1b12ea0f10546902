package meshcert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	clocktesting "k8s.io/utils/clock/testing"

	"aeraki.io/aeraki/pkg/xds"
)

// istiodName is the name istiod's serving certificate carries.
const istiodName = "istiod.istio-system.svc"

// testCA is a root and an intermediate CA under it, which signs.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca := &testCA{rootKey: newKey(t), interKey: newKey(t)}
	// Valid long before and after anything a fake clock reaches in these tests.
	from, to := time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour)
	ca.root = createCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " root"}, NotBefore: from, NotAfter: to,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, nil, ca.rootKey.Public(), ca.rootKey)
	ca.inter = createCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " intermediate"}, NotBefore: from, NotAfter: to,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, ca.root, ca.interKey.Public(), ca.rootKey)
	return ca
}

// leaf signs a workload certificate for pub as istiod does (see signLeaf), valid
// for an hour from now.
func (ca *testCA) leaf(t *testing.T, pub crypto.PublicKey, uris []string, now time.Time) *x509.Certificate {
	t.Helper()
	cert, err := ca.signLeaf(pub, uris, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// signLeaf signs a workload certificate for pub as istiod does: the given URIs as
// SANs, valid from two minutes before now for lifetime, for server and client auth.
func (ca *testCA) signLeaf(pub crypto.PublicKey, uris []string, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		NotBefore:   now.Add(-2 * time.Minute),
		NotAfter:    now.Add(lifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	return makeCert(tmpl, ca.inter, pub, ca.interKey)
}

// chain is the answer of istiod's CA for leaf: leaf, intermediate, root.
func (ca *testCA) chain(leaf *x509.Certificate) []string {
	return []string{pemOf(leaf) + "\n", pemOf(ca.inter) + "\n", pemOf(ca.root)}
}

// serving is a certificate for istiod's name, valid in real time (the TLS handshake
// checks it against the system clock).
func (ca *testCA) serving(t *testing.T) tls.Certificate {
	t.Helper()
	key := newKey(t)
	cert := createCert(t, &x509.Certificate{
		DNSNames:  []string{istiodName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.inter, key.Public(), ca.interKey)
	return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.inter.Raw}, PrivateKey: key}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// createCert signs tmpl with parent's key (self-signed when parent is nil).
func createCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	cert, err := makeCert(tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func makeCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemOf(cert *x509.Certificate) string {
	return strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})))
}

// fakeCA is istiod's CA service as the Source sees it, over TLS on loopback: it
// authenticates the bearer token by a table of tokens to identities and signs the
// request's key for the token's identity, ignoring what the request asks for, as
// istiod's CreateCertificate does. Times come from the fake clock.
type fakeCA struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca    *testCA
	clock *clocktesting.FakeClock
	addr  string

	mu sync.Mutex
	// identities are the tokens it accepts, with the SPIFFE ID each proves.
	identities map[string]string
	// maxLifetime, if set, caps the lifetime it signs for.
	maxLifetime time.Duration
	// failures answer the next requests, one each; down answers every request after.
	failures []error
	down     error
	// hang, if set, makes requests wait for their context to end.
	hang     bool
	requests []caRequest
}

// caRequest is what the fake CA was asked.
type caRequest struct {
	token    string
	ttl      int64
	csr      *x509.CertificateRequest
	leafDER  []byte // signed, if it was
	received time.Time
}

func startFakeCA(t *testing.T, clk *clocktesting.FakeClock) *fakeCA {
	t.Helper()
	f := &fakeCA{ca: newTestCA(t, "mesh"), clock: clk, identities: map[string]string{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{f.ca.serving(t)},
		MinVersion:   tls.VersionTLS12,
	})))
	pb.RegisterIstioCertificateServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return f
}

func (f *fakeCA) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token := ""
	if v := md.Get("authorization"); len(v) == 1 {
		token = strings.TrimPrefix(v[0], "Bearer ")
	}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	now := f.clock.Now()

	f.mu.Lock()
	f.requests = append(f.requests, caRequest{token: token, ttl: req.GetValidityDuration(), csr: csr, received: now})
	index := len(f.requests) - 1
	var fail error
	if len(f.failures) > 0 {
		fail, f.failures = f.failures[0], f.failures[1:]
	} else {
		fail = f.down
	}
	identity, known := f.identities[token]
	lifetime := time.Duration(req.GetValidityDuration()) * time.Second
	if f.maxLifetime > 0 {
		lifetime = min(lifetime, f.maxLifetime)
	}
	hang := f.hang
	f.mu.Unlock()

	if hang {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if fail != nil {
		return nil, fail
	}
	if !known {
		return nil, status.Error(codes.Unauthenticated, "request authenticate failure")
	}
	leaf, err := f.ca.signLeaf(csr.PublicKey, []string{identity}, now, lifetime)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	f.mu.Lock()
	f.requests[index].leafDER = leaf.Raw
	f.mu.Unlock()
	return &pb.IstioCertificateResponse{CertChain: f.ca.chain(leaf)}, nil
}

func parseCSR(data string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode([]byte(data))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, status.Error(codes.InvalidArgument, "no PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	return csr, csr.CheckSignature()
}

func (f *fakeCA) accept(token, identity string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.identities[token] = identity
}

func (f *fakeCA) set(change func(f *fakeCA)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeCA) received() []caRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]caRequest(nil), f.requests...)
}

// clientFiles writes the mesh root and a token into a directory of t and returns the
// Security of a client of f.
func (f *fakeCA) clientFiles(t *testing.T, token string) xds.Security {
	t.Helper()
	dir := t.TempDir()
	sec := xds.Security{
		RootCertFile: filepath.Join(dir, "root-cert.pem"),
		ServerName:   istiodName,
		TokenFile:    filepath.Join(dir, "istio-token"),
	}
	writeFile(t, sec.RootCertFile, pemOf(f.ca.root))
	writeFile(t, sec.TokenFile, token)
	return sec
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
