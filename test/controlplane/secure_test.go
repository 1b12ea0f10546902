package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	mcp "istio.io/api/mcp/v1alpha1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// serviceEntryTypeURL is how an xDS client of the "api" generator asks for
// ServiceEntries: the collection's group/version/kind.
const serviceEntryTypeURL = "networking.istio.io/v1/ServiceEntry"

// TestStockIstiod runs istiod as a stock install does and talks to its secure xDS port
// as the controller is to: TLS verified against the mesh root certificate from
// istio-ca-root-cert, a token of a ServiceAccount of the root namespace with audience
// istio-ca, the "api" generator, the token's namespace on the node. Then every way in
// that istiod must refuse.
func TestStockIstiod(t *testing.T) {
	ctx := t.Context()
	begin := time.Now()
	cp := StartForTest(t, Options{WorkDir: t.TempDir(), StockIstiod: true})
	t.Logf("control plane with stock istiod up in %s", time.Since(begin).Round(time.Millisecond))
	if cp.IstiodSecureAddr == "" {
		t.Fatal("no IstiodSecureAddr with Options.StockIstiod")
	}
	istio, err := istioclient.NewForConfig(cp.RestConfig)
	if err != nil {
		t.Fatal(err)
	}
	createServiceEntry(t, istio, "secure", "240.240.0.20")

	begin = time.Now()
	ic, err := cp.IstiodClient(ctx, filepath.Join(t.TempDir(), "aeraki"), IstioNamespace, "aeraki")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mesh root certificate and token written in %s", time.Since(begin).Round(time.Millisecond))
	roots := certPool(t, ic.RootCertFile)
	token := readFile(t, ic.TokenFile)
	good := &tls.Config{RootCAs: roots, ServerName: ic.ServerName, MinVersion: tls.VersionTLS12}

	t.Run("serving certificate", func(t *testing.T) {
		state, err := handshake(ctx, cp.IstiodSecureAddr, good)
		if err != nil {
			t.Fatalf("TLS to istiod with the mesh root and %s: %v", ic.ServerName, err)
		}
		leaf := state.PeerCertificates[0]
		if !slices.Contains(leaf.DNSNames, IstiodServerName) {
			t.Errorf("istiod's certificate names %v, want %s among them", leaf.DNSNames, IstiodServerName)
		}
		t.Logf("istiod's certificate: DNS names %v, issuer %q", leaf.DNSNames, leaf.Issuer)
	})

	t.Run("api generator serves the root namespace", func(t *testing.T) {
		waitServiceEntry(t, cp.IstiodSecureAddr, good, token, IstioNamespace, "default/secure")
	})

	t.Run("refused", func(t *testing.T) {
		otherNS, err := cp.ServiceAccountToken(ctx, "default", "aeraki", TokenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		otherAudience, err := cp.ServiceAccountToken(ctx, IstioNamespace, "aeraki", TokenOptions{Audiences: []string{"kubernetes"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name      string
			token     string
			namespace string // the node's
			want      codes.Code
		}{
			// The token is good and its node honest: the "api" generator refuses the namespace.
			{"token of another namespace", otherNS, "default", codes.PermissionDenied},
			// The node claims a namespace its token does not prove (PILOT_ENABLE_XDS_IDENTITY_CHECK).
			{"node namespace not the token's", token, "default", codes.PermissionDenied},
			{"token of another namespace, node claims the root namespace", otherNS, IstioNamespace, codes.PermissionDenied},
			{"token for another audience", otherAudience, IstioNamespace, codes.Unauthenticated},
			{"no token", "", IstioNamespace, codes.Unauthenticated},
			{"not a token", "not-a-jwt", IstioNamespace, codes.Unauthenticated},
		} {
			t.Run(tc.name, func(t *testing.T) {
				names, err := serviceEntries(ctx, cp.IstiodSecureAddr, good, tc.token, tc.namespace)
				if got := status.Code(err); got != tc.want {
					t.Fatalf("got %v (%v) and ServiceEntries %v, want %v", got, err, names, tc.want)
				}
				t.Logf("refused: %v", err)
			})
		}
	})

	t.Run("plaintext port gives the api generator to nobody", func(t *testing.T) {
		names, err := serviceEntries(ctx, cp.IstiodAddr, nil, "", IstioNamespace)
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Fatalf("got %v (%v) and ServiceEntries %v on the plaintext port, want Unauthenticated", got, err, names)
		}
	})

	t.Run("wrong root certificate", func(t *testing.T) {
		foreign := filepath.Join(t.TempDir(), "root-cert.pem")
		if err := WriteForeignRootCert(foreign); err != nil {
			t.Fatal(err)
		}
		bad := &tls.Config{RootCAs: certPool(t, foreign), ServerName: ic.ServerName, MinVersion: tls.VersionTLS12}
		_, err := handshake(ctx, cp.IstiodSecureAddr, bad)
		if unknown := (x509.UnknownAuthorityError{}); !errors.As(err, &unknown) {
			t.Fatalf("TLS handshake with a foreign root: got %v, want an unknown authority", err)
		}
		names, err := serviceEntries(ctx, cp.IstiodSecureAddr, bad, token, IstioNamespace)
		if got := status.Code(err); got != codes.Unavailable || !strings.Contains(err.Error(), "x509") {
			t.Fatalf("ADS with a foreign root: got %v (%v) and ServiceEntries %v, want Unavailable naming x509", got, err, names)
		}
	})

	t.Run("wrong server name", func(t *testing.T) {
		bad := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		_, err := handshake(ctx, cp.IstiodSecureAddr, bad)
		if hostname := (x509.HostnameError{}); !errors.As(err, &hostname) {
			t.Fatalf("TLS handshake for localhost: got %v, want a hostname mismatch", err)
		}
	})

	// The root lives in the Secret istio-ca-secret: a restarted istiod keeps it, so a
	// client's root file stays valid, and its serving certificate chains to it again.
	t.Run("istiod restart keeps the mesh root", func(t *testing.T) {
		before := readFile(t, ic.RootCertFile)
		if err := cp.StopIstiod(); err != nil {
			t.Fatal(err)
		}
		if err := cp.StartIstiod(ctx); err != nil {
			t.Fatal(err)
		}
		after, err := cp.MeshRootCert(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(after) != before {
			t.Errorf("the mesh root changed across an istiod restart")
		}
		waitServiceEntry(t, cp.IstiodSecureAddr, good, token, IstioNamespace, "default/secure")
	})

	secret, err := kubernetes.NewForConfigOrDie(cp.RestConfig).CoreV1().Secrets(IstioNamespace).Get(ctx, "istio-ca-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("istiod's CA keeps no root in Secret istio-ca-secret: %v", err)
	}
	if got, want := string(secret.Data["ca-cert.pem"]), readFile(t, ic.RootCertFile); got != want {
		t.Errorf("istio-ca-root-cert is not the root of istio-ca-secret")
	}
}

// waitServiceEntry polls istiod's "api" generator until it lists the ServiceEntry
// "namespace/name": istiod may not have seen it yet, or not be serving yet.
func waitServiceEntry(t *testing.T, addr string, cfg *tls.Config, token, nodeNamespace, want string) {
	t.Helper()
	begin := time.Now()
	var names []string
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		names, last = serviceEntries(ctx, addr, cfg, token, nodeNamespace)
		return slices.Contains(names, want), nil
	})
	if err != nil {
		t.Fatalf("istiod never served ServiceEntry %s: got %v, last error %v", want, names, last)
	}
	t.Logf("ServiceEntries %v served over TLS after %s", names, time.Since(begin).Round(time.Millisecond))
}

// serviceEntries connects to istiod as an xDS client of the "api" generator whose node
// declares nodeNamespace, over TLS with cfg (plaintext if nil) and with the token as
// "authorization: Bearer" (none if empty), asks for ServiceEntries and returns the
// names ("namespace/name") of the first response, or the error that ended the stream.
func serviceEntries(ctx context.Context, addr string, cfg *tls.Config, token, nodeNamespace string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if cfg != nil {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	meta, err := structpb.NewStruct(map[string]any{"GENERATOR": "api", "NAMESPACE": nodeNamespace})
	if err != nil {
		return nil, err
	}
	node := &core.Node{Id: fmt.Sprintf("sidecar~127.0.0.1~aeraki.%s~%s.svc.cluster.local", nodeNamespace, nodeNamespace), Metadata: meta}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: serviceEntryTypeURL}); err != nil {
		if _, rerr := stream.Recv(); rerr != nil { // the stream's status says why
			return nil, rerr
		}
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, res := range resp.GetResources() {
		r := &mcp.Resource{}
		if err := res.UnmarshalTo(r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", res.GetTypeUrl(), err)
		}
		names = append(names, r.GetMetadata().GetName())
	}
	return names, nil
}

// bearer sends a ServiceAccount token as istio-agent does, and only over TLS.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// handshake makes a TLS connection and returns its state after the handshake.
func handshake(ctx context.Context, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState(), nil
}

func certPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readFile(t, path))) {
		t.Fatalf("no certificate in %s", path)
	}
	return pool
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
