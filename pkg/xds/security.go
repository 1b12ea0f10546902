package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"aeraki.io/aeraki/pkg/meshpem"
	"aeraki.io/aeraki/pkg/model"
)

// Security says how the watcher and istiod prove who they are to each other.
//
// By default (Plaintext false) the watcher speaks TLS to istiod's secure xDS port
// (15012), verifies istiod's certificate against the mesh root certificate, and
// authenticates with the pod's own ServiceAccount token, as istio-agent does for every
// sidecar: istiod serves its config through the "api" generator only to identities of
// its root namespace.
type Security struct {
	// Plaintext connects without TLS and without an identity, to istiod's port 15010.
	// Only an istiod started with ENABLE_XDS_API_GENERATOR_AUTH=false (or older than
	// Istio 1.31) answers it: for local development.
	Plaintext bool
	// RootCertFile holds the PEM root certificate(s) istiod's serving certificate must
	// chain to: the mesh root certificate, key root-cert.pem of the ConfigMap
	// istio-ca-root-cert that Istio puts in every namespace. It is read again on every
	// connection, so a rotated root is picked up.
	RootCertFile string
	// ServerName is the name istiod's certificate must carry; empty means the host of
	// the address (istiod.istio-system.svc).
	ServerName string
	// TokenFile holds the ServiceAccount token sent as "authorization: Bearer": a
	// projected token with the audience istiod checks (istio-ca). It is read for every
	// connection, so the kubelet's rotation is followed.
	TokenFile string
}

// Where istio-agent's recipe puts the mesh root certificate and the projected token;
// the defaults of a Security that is not Plaintext.
const (
	DefaultRootCertFile = "/var/run/secrets/istio/root-cert.pem"
	DefaultTokenFile    = "/var/run/secrets/tokens/istio-token" //nolint:gosec // G101: a path, not a credential
)

// withDefaults fills in the files and the server name (the host of address).
func (s Security) withDefaults(address string) Security {
	if s.Plaintext {
		return s
	}
	if s.RootCertFile == "" {
		s.RootCertFile = DefaultRootCertFile
	}
	if s.TokenFile == "" {
		s.TokenFile = DefaultTokenFile
	}
	if s.ServerName == "" {
		s.ServerName = address
		if host, _, err := net.SplitHostPort(address); err == nil {
			s.ServerName = host
		}
	}
	return s
}

// DialOptions returns the transport and per-call credentials of a gRPC client of
// istiod at address as s says, with the defaults of the watcher filled in: TLS
// verified against the root certificate file for the server name, and the
// ServiceAccount token as "authorization: Bearer" on every call, both files read
// again for every connection and call; or plaintext. Clients of istiod's other
// services on its secure port (its CA) connect as the watcher does.
func (s Security) DialOptions(address string) []grpc.DialOption {
	return s.withDefaults(address).credentials(func(reason string, err error) error {
		return &localError{reason: reason, err: err}
	})
}

// SPIFFEID is the mesh identity of the ServiceAccount whose token s sends, in trust
// domain td: what istiod's CA writes into that ServiceAccount's certificate.
func (s Security) SPIFFEID(td string) (string, error) {
	id, err := readIdentity(s.withDefaults("").TokenFile)
	if err != nil {
		return "", err
	}
	if id.ServiceAccount == "" {
		return "", fmt.Errorf("the token names no ServiceAccount (namespace %s)", id.Namespace)
	}
	return model.SPIFFEID(td, id.Namespace, id.ServiceAccount), nil
}

// RootFile is the mesh root certificate file s verifies istiod against.
func (s Security) RootFile() string { return s.withDefaults("").RootCertFile }

// credentials are TLS against the mesh root and the ServiceAccount token, read
// again for every connection and stream, or plaintext like istiod's port 15010.
// note is told of each failure found on our side and returns the error to report.
func (s Security) credentials(note func(reason string, err error) error) []grpc.DialOption {
	if s.Plaintext {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(&rootTLS{rootFile: s.RootCertFile, serverName: s.ServerName, note: note}),
		grpc.WithPerRPCCredentials(tokenCredentials{file: s.TokenFile, note: note}),
	}
}

// rootTLS is gRPC transport security that verifies istiod against the root
// certificate file as it is at each handshake: a rotated mesh root is followed
// without a restart, and a root file that appears late is found.
type rootTLS struct {
	rootFile, serverName string
	// note records a failure found here for the classification of the attempt it
	// breaks (gRPC passes it on as text only) and returns it.
	note func(reason string, err error) error
}

var _ credentials.TransportCredentials = (*rootTLS)(nil)

func (c *rootTLS) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	roots, err := meshpem.LoadRoots(c.rootFile)
	if err != nil {
		return nil, nil, c.note(ReasonRootCert, err)
	}
	tlsCreds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: c.serverName, MinVersion: tls.VersionTLS12})
	// gRPC's TLS verifies the name it is given, not the config's ServerName: give it
	// the name istiod's certificate carries, not the dialled address.
	conn, info, err := tlsCreds.ClientHandshake(ctx, c.serverName, raw)
	if err != nil {
		if brokenConnection(err) {
			return nil, nil, err
		}
		return nil, nil, c.note(ReasonTLS, err)
	}
	return conn, info, nil
}

// brokenConnection reports whether a handshake failed because the connection did
// (closed, reset, timed out, cancelled), not because of what istiod presented.
func brokenConnection(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *rootTLS) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("istiod root TLS: client side only")
}

func (c *rootTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c *rootTLS) Clone() credentials.TransportCredentials {
	clone := *c
	return &clone
}

// OverrideServerName is deprecated in gRPC and unused; the server name is fixed.
func (c *rootTLS) OverrideServerName(string) error { return nil }

// tokenCredentials send the ServiceAccount token, read from its file for every new
// stream, as "authorization: Bearer", as istio-agent does: the kubelet rewrites the
// file before the token expires.
type tokenCredentials struct {
	file string
	note func(reason string, err error) error
}

var _ credentials.PerRPCCredentials = tokenCredentials{}

func (c tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token, err := readToken(c.file)
	if err != nil {
		// Unavailable, not gRPC's default Unauthenticated: istiod did not refuse it.
		return nil, status.Error(codes.Unavailable, c.note(ReasonToken, err).Error())
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity is true: a token must never travel in plaintext.
func (tokenCredentials) RequireTransportSecurity() bool { return true }

func readToken(file string) (string, error) {
	data, err := os.ReadFile(filepath.Clean(file))
	if err != nil {
		return "", fmt.Errorf("reading the token: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return token, nil
}
