package meshcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"aeraki.io/aeraki/pkg/meshpem"
)

// parseChain checks what istiod's CA answered and makes the certificate to serve of
// it. chain is IstioCertificateResponse.cert_chain: the leaf first, then the
// intermediates, and the root (or roots, while the mesh root rotates) last; an
// element may hold several PEM certificates. The leaf must be for key, carry one
// SPIFFE identity, be valid at now and chain to the root as a server certificate.
func parseChain(chain []string, key *ecdsa.PrivateKey, now time.Time) (*certificate, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("%d certificate(s) in the chain, want the leaf and the root", len(chain))
	}
	var served []*x509.Certificate
	for i, elem := range chain[:len(chain)-1] {
		certs, err := meshpem.Certificates([]byte(elem))
		if err != nil {
			return nil, fmt.Errorf("chain element %d: %w", i, err)
		}
		served = append(served, certs...)
	}
	roots, err := meshpem.Certificates([]byte(chain[len(chain)-1]))
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}

	leaf := served[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the leaf certificate is not for the key of the request")
	}
	identity, err := spiffeID(leaf)
	if err != nil {
		return nil, err
	}
	rootPool, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		rootPool.AddCert(c)
	}
	for _, c := range served[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("verifying %s: %w", identity, err)
	}

	out := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range served {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return &certificate{tls: out, identity: identity, notAfter: leaf.NotAfter}, nil
}

// spiffeID returns the one SPIFFE URI among the certificate's SANs.
func spiffeID(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			ids = append(ids, u.String())
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("the leaf certificate has %d SPIFFE identities %v, want one", len(ids), ids)
	}
	return ids[0], nil
}
