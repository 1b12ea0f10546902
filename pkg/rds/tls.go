package rds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"

	"google.golang.org/grpc/credentials"

	"aeraki.io/aeraki/pkg/meshpem"
)

// TLS is how Serve proves who it is and checks who its clients are. Both fields
// are required: there is no plaintext mode.
type TLS struct {
	// Certificate returns the server's certificate for a handshake; it is called
	// at every handshake, so a rotated certificate is served from then on.
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// RootsFile is a PEM file of the mesh root certificate(s) a client certificate
	// must chain to (root-cert.pem of Istio's ConfigMap istio-ca-root-cert). It is
	// read again at every handshake, so rotated roots are followed; a handshake
	// while it is missing or holds no certificate fails.
	RootsFile string
}

func (t TLS) validate() error {
	if t.Certificate == nil {
		return errors.New("no server certificate callback")
	}
	if t.RootsFile == "" {
		return errors.New("no mesh roots file")
	}
	return nil
}

// Reasons a handshake is refused: the values passed to Observer.ObserveRefused.
// A small fixed set, never free text.
const (
	// ReasonNoCertificate: the client presented no certificate.
	ReasonNoCertificate = "no_client_certificate"
	// ReasonUntrusted: the client certificate does not chain to the mesh roots
	// (another CA, expired, not for client authentication).
	ReasonUntrusted = "untrusted_client_certificate"
	// ReasonNoSPIFFEID: the client certificate chains to the mesh roots but carries
	// no SPIFFE ID (exactly one URI SAN spiffe://<trust domain>/<path>).
	ReasonNoSPIFFEID = "no_spiffe_id"
	// ReasonRoots: our side: the roots file is missing or holds no certificate.
	ReasonRoots = "roots_file"
	// ReasonServerCertificate: our side: the certificate callback failed.
	ReasonServerCertificate = "server_certificate"
)

// RefusalReasons returns every reason, for counters that show each from the start.
func RefusalReasons() []string {
	return []string{ReasonNoCertificate, ReasonUntrusted, ReasonNoSPIFFEID, ReasonRoots, ReasonServerCertificate}
}

// refusal is a failed handshake and why.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// credentials returns Serve's transport security: the roots are read for each
// handshake (GetConfigForClient), and the client is checked by our own code
// (VerifyConnection) rather than by crypto/tls, so that every refusal is logged
// and counted with its reason; crypto/tls would fail a handshake without a client
// certificate before any code of ours runs.
func (s *Server) credentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			address := ""
			if hello.Conn != nil {
				address = hello.Conn.RemoteAddr().String()
			}
			roots, err := meshpem.LoadRoots(s.auth.RootsFile)
			if err != nil {
				return nil, s.refuse(address, &refusal{reason: ReasonRoots, err: err})
			}
			return &tls.Config{
				MinVersion: tls.VersionTLS12,
				// gRPC is HTTP/2; gRPC's TLS also adds it.
				NextProtos: []string{"h2"},
				GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
					cert, err := s.auth.Certificate(hello)
					if err == nil && cert == nil {
						err = errors.New("no certificate")
					}
					if err != nil {
						return nil, s.refuse(address, &refusal{reason: ReasonServerCertificate, err: fmt.Errorf("server certificate: %w", err)})
					}
					return cert, nil
				},
				// Asked for, not required: VerifyConnection refuses a missing one.
				// No ClientCAs: a Go client sends only a certificate of a CA the
				// server lists, and sidecars send theirs anyway.
				ClientAuth: tls.RequestClientCert,
				VerifyConnection: func(state tls.ConnectionState) error {
					if err := verifyClient(roots, state.PeerCertificates); err != nil {
						return s.refuse(address, err)
					}
					return nil
				},
			}, nil
		},
	})
}

// refuse logs and reports a refused handshake and returns err, a *refusal.
func (s *Server) refuse(address string, err *refusal) error {
	if err.reason == ReasonRoots || err.reason == ReasonServerCertificate {
		// Our side: every client is refused until it is fixed.
		s.log.Error(err.err, "refusing a client: cannot do TLS", "address", address, "reason", err.reason)
	} else {
		s.log.V(1).Info("refusing a client", "address", address, "reason", err.reason, "error", err.err.Error())
	}
	s.observer.ObserveRefused(err.reason)
	return err
}

// verifyClient checks a client's certificate chain (leaf first) against roots as
// crypto/tls would for a required client certificate, and that the leaf has a
// SPIFFE ID. It returns nil or the refusal.
func verifyClient(roots *x509.CertPool, chain []*x509.Certificate) *refusal {
	if len(chain) == 0 {
		return &refusal{reason: ReasonNoCertificate, err: errors.New("no client certificate")}
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return &refusal{reason: ReasonUntrusted, err: fmt.Errorf("client certificate: %w", err)}
	}
	if _, err := spiffeID(chain[0]); err != nil {
		return &refusal{reason: ReasonNoSPIFFEID, err: fmt.Errorf("client certificate: %w", err)}
	}
	return nil
}

// spiffeID returns the SPIFFE ID of an X.509 SVID, which carries exactly one URI
// SAN, spiffe://<trust domain>/<path> (Istio: spiffe://<td>/ns/<ns>/sa/<sa>).
func spiffeID(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("%d URI SANs, want one SPIFFE ID", len(cert.URIs))
	}
	u := cert.URIs[0]
	if !isSPIFFE(u) {
		return "", fmt.Errorf("URI SAN %q is not a SPIFFE ID", u.String())
	}
	return u.String(), nil
}

func isSPIFFE(u *url.URL) bool {
	return u.Scheme == "spiffe" && u.Host != "" && u.Port() == "" && u.User == nil &&
		u.RawQuery == "" && u.Fragment == "" && u.Path != "" && u.Path != "/"
}
