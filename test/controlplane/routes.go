package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"aeraki.io/aeraki/pkg/meshcert"
	"aeraki.io/aeraki/pkg/meshpem"
	"aeraki.io/aeraki/pkg/xds"
)

// RouteClient is a sidecar's connection to the controller's route server: mutual TLS
// with a workload certificate that istiod's CA issued for the client's ServiceAccount,
// the server verified against the mesh root and its SPIFFE identity, as Envoy does
// with the cluster our EnvoyFilter adds.
type RouteClient struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
}

// DialRoutes connects to the route server at addr as ic's ServiceAccount, expecting
// the server to be serverID. It waits for the client's certificate.
func DialRoutes(ctx context.Context, ic *IstiodClient, addr, serverID string) (*RouteClient, error) {
	src, err := meshcert.New(meshcert.Options{
		Address:  ic.Addr,
		Security: xds.Security{RootCertFile: ic.RootCertFile, ServerName: ic.ServerName, TokenFile: ic.TokenFile},
		Logger:   logr.Discard(),
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	rc := &RouteClient{cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- src.Run(runCtx) }()
	select {
	case <-src.Issued():
	case <-ctx.Done():
		_ = rc.Close()
		err := ctx.Err()
		if last := src.LastError(); last != nil {
			err = fmt.Errorf("%w (last error: %w)", err, last)
		}
		return nil, fmt.Errorf("route client certificate: %w", err)
	}
	roots, err := meshpem.LoadRoots(ic.RootCertFile)
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS12,
		NextProtos:           []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return src.GetCertificate(nil) },
		// The server is known by its SPIFFE ID, not a DNS name: check the chain and the ID.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("route server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("route server certificate: %w", err)
			}
			if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == serverID }) {
				return fmt.Errorf("route server is %v, want %s", leaf.URIs, serverID)
			}
			return nil
		},
	}
	rc.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	return rc, nil
}

// Fetch asks for the named resources of typeURL as the sidecar node and returns the
// first response, waiting at most wait for it.
func (rc *RouteClient) Fetch(ctx context.Context, node, typeURL string, names []string, wait time.Duration) (*discovery.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(rc.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("route server stream: %w", err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		return nil, fmt.Errorf("route server request: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("route server response: %w", err)
	}
	return resp, nil
}

// Close ends the connection and the certificate's renewal.
func (rc *RouteClient) Close() error {
	var err error
	if rc.conn != nil {
		err = rc.conn.Close()
	}
	rc.cancel()
	return errors.Join(err, <-rc.done)
}
