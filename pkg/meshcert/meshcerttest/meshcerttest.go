// Package meshcerttest holds a throwaway certificate authority and a TLS handshake
// for the tests of mesh certificates.
package meshcerttest

import (
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
	"sync/atomic"
	"testing"
	"time"
)

// Handshake serves TLS with server on loopback, connects as a client that trusts
// roots and checks no host name (a sidecar checks the SPIFFE identity instead, which
// the caller reads from the leaf), and returns the server's verified leaf.
func Handshake(t testing.TB, server *tls.Config, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lis.Close() }()
	served := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err == nil {
			err = conn.(*tls.Conn).Handshake()
			_ = conn.Close()
		}
		served <- err
	}()
	var verified *x509.Certificate
	conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified below, against roots and without a host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return err
			}
			verified = cs.PeerCertificates[0]
			return nil
		},
	})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	_ = conn.Close()
	if err := <-served; err != nil {
		t.Fatalf("server side of the handshake: %v", err)
	}
	return verified
}

// CA is a throwaway certificate authority, made in memory, that signs as Istio's CA
// does for workloads.
type CA struct {
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA makes a self-signed root named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	ca := &CA{Cert: sign(t, template, template, key, key), key: key}
	ca.serial.Store(1)
	return ca
}

// PEM returns the CA's certificate as PEM.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a pool of the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Leaf describes a certificate to issue.
type Leaf struct {
	URIs  []string
	DNS   []string
	IPs   []net.IP
	Usage x509.ExtKeyUsage // both server and client authentication when zero
}

// Issue signs a certificate for l with a new key.
func (ca *CA) Issue(t testing.TB, l Leaf) *tls.Certificate {
	t.Helper()
	key := newKey(t)
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if l.Usage != 0 {
		usages = []x509.ExtKeyUsage{l.Usage}
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		DNSNames:     l.DNS,
		IPAddresses:  l.IPs,
	}
	for _, raw := range l.URIs {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		template.URIs = append(template.URIs, u)
	}
	cert := sign(t, template, ca.Cert, key, ca.key)
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// Workload issues an Istio workload certificate for a service account.
func (ca *CA) Workload(t testing.TB, namespace, serviceAccount string) *tls.Certificate {
	t.Helper()
	return ca.Issue(t, Leaf{URIs: []string{"spiffe://cluster.local/ns/" + namespace + "/sa/" + serviceAccount}})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func sign(t testing.TB, template, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
