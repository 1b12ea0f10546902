package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"aeraki.io/aeraki/pkg/meshpem"
)

// The secure path of a stock install, as istiod serves it and as a client of it needs it.
const (
	// IstiodServerName is the name istiod's serving certificate carries and a client
	// verifies: istiod.<namespace>.svc, which istiod always puts among the DNS names of
	// the certificate its CA signs for itself (with istiod-remote.<namespace>.svc,
	// istio-pilot.<namespace>.svc and the host of the mesh's discoveryAddress, by
	// default the same istiod.istio-system.svc), so no ISTIOD_CUSTOM_HOST is needed.
	IstiodServerName = "istiod." + IstioNamespace + ".svc"
	// IstioCAAudience is the audience istiod demands of a ServiceAccount token in its
	// TokenReview (TOKEN_AUDIENCES, default istio-ca).
	IstioCAAudience = "istio-ca"
	// MeshRootCertConfigMap is the ConfigMap istiod's namespace controller writes into
	// every namespace with the mesh root certificate under MeshRootCertKey.
	MeshRootCertConfigMap = "istio-ca-root-cert"
	// MeshRootCertKey is the key of the PEM root certificate in MeshRootCertConfigMap.
	MeshRootCertKey = "root-cert.pem"
	// DefaultTokenExpiry is the lifetime of a token when TokenOptions.Expiry is zero.
	DefaultTokenExpiry = time.Hour
)

// meshRootTimeout bounds the wait for istiod to distribute the mesh root certificate.
const meshRootTimeout = 60 * time.Second

// stockIstiodEnv is istiod's environment in a stock install: exactly what the chart's
// Deployment (manifests/charts/istio-control/istio-discovery, default values) sets,
// with the downward-API values (POD_NAME, POD_NAMESPACE, SERVICE_ACCOUNT) fixed. Every
// other setting keeps its default, among them the ones the plaintext istiodEnv turns
// off: ENABLE_CA_SERVER (its CA signs its own serving certificate from a self-signed
// root it keeps in the Secret istio-ca-secret and distributes as the ConfigMap
// istio-ca-root-cert), ENABLE_XDS_API_GENERATOR_AUTH (the "api" generator only for
// verified identities of the root namespace), XDS_AUTH and
// PILOT_ENABLE_XDS_IDENTITY_CHECK (a token's namespace must be the node's),
// TOKEN_AUDIENCES (istio-ca), XDS_AUTH_PLAINTEXT (off: no identity on 15010), and no
// ISTIOD_CUSTOM_HOST. JWT_POLICY is not set: only istio-agent reads it.
//
// What differs from a pod, and why (stockIstiodArgs adds the flags):
//   - Addresses: every server (xDS plaintext and TLS, HTTP, webhook HTTPS, monitoring,
//     ControlZ) listens on 127.0.0.1 on a free port instead of :15010, :15012, :8080,
//     :15017, :15014 and :9876, so parallel control planes do not collide.
//   - --kubeconfig: the admin kubeconfig of our apiserver instead of the in-cluster
//     ServiceAccount istiod with its ClusterRole. It is a superset of that role, which
//     includes creating TokenReviews (istiod's kube client checks every token with one).
//   - --meshConfig and --networksConfig: files instead of the mounted ConfigMap istio;
//     the mesh config sets only rootNamespace istio-system, the default anyway.
//   - --shutdownDuration=1s instead of 10s: restarts in tests would each wait 10s.
//   - No token of its own at /var/run/secrets/tokens/istio-token: istiod reads it only
//     to guess an issuer for out-of-cluster OIDC token checks, which in a pod it does not
//     use either (it runs in cluster, and checks tokens by TokenReview).
//
// Around it, unlike a cluster: no webhook configuration points at its webhook server,
// and no kube-controller-manager, so the test creates ServiceAccounts itself.
var stockIstiodEnv = []string{
	"POD_NAMESPACE=" + IstioNamespace,
	"POD_NAME=istiod-local",
	"SERVICE_ACCOUNT=istiod",
	"REVISION=default",
	"PILOT_CERT_PROVIDER=istiod",
	"CA_TRUSTED_NODE_ACCOUNTS=" + IstioNamespace + "/ztunnel",
	"PILOT_ENABLE_ANALYSIS=false",
	"CLUSTER_ID=Kubernetes",
}

// stockIstiodArgs are the flags that a stock istiod gets beyond the ones StartIstiod
// always passes: its TLS xDS and webhook servers on loopback, and the chart's
// --domain and --keepaliveMaxServerConnectionAge.
func (c *ControlPlane) stockIstiodArgs() []string {
	return []string{
		"--secureGRPCAddr=" + c.IstiodSecureAddr,
		"--httpsAddr=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.istiodHTTPS)),
		"--domain=cluster.local",
		"--keepaliveMaxServerConnectionAge=30m",
	}
}

// secureListening returns nil once istiod's TLS xDS port accepts connections (at
// once without it): istiod opens it after /ready can already pass.
func (c *ControlPlane) secureListening(ctx context.Context) error {
	if c.IstiodSecureAddr == "" {
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.IstiodSecureAddr)
	if err != nil {
		return fmt.Errorf("secure xDS port: %w", err)
	}
	return conn.Close()
}

// TokenOptions shape a ServiceAccount token.
type TokenOptions struct {
	// Audiences default to IstioCAAudience.
	Audiences []string
	// Expiry defaults to DefaultTokenExpiry; the apiserver refuses less than 10 minutes.
	Expiry time.Duration
}

// ServiceAccountToken returns a token of the ServiceAccount namespace/name, issued by
// the TokenRequest API as the kubelet gets a pod's projected token. The namespace and
// the ServiceAccount are created when missing (no controller here creates them).
func (c *ControlPlane) ServiceAccountToken(ctx context.Context, namespace, name string, opts TokenOptions) (string, error) {
	kube, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return "", err
	}
	if err := c.createNamespaces(ctx, namespace); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create ServiceAccount %s/%s: %w", namespace, name, err)
	}
	if len(opts.Audiences) == 0 {
		opts.Audiences = []string{IstioCAAudience}
	}
	if opts.Expiry == 0 {
		opts.Expiry = DefaultTokenExpiry
	}
	seconds := int64(opts.Expiry / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: opts.Audiences, ExpirationSeconds: &seconds}}
	got, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return got.Status.Token, nil
}

// WriteServiceAccountToken writes a new token of the ServiceAccount (see
// ServiceAccountToken) to path, replacing the file in one rename as the kubelet swaps
// a projected token, so a reader never sees half of it.
func (c *ControlPlane) WriteServiceAccountToken(ctx context.Context, path, namespace, name string, opts TokenOptions) error {
	token, err := c.ServiceAccountToken(ctx, namespace, name, opts)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(token))
}

// MeshRootCert waits until istiod has written the ConfigMap istio-ca-root-cert into the
// root namespace and returns its root-cert.pem: the certificate istiod's serving
// certificate chains to.
func (c *ControlPlane) MeshRootCert(ctx context.Context) ([]byte, error) {
	kube, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return nil, err
	}
	var pemData []byte
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, meshRootTimeout, true, func(ctx context.Context) (bool, error) {
		cm, err := kube.CoreV1().ConfigMaps(IstioNamespace).Get(ctx, MeshRootCertConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			last = err
			return false, nil
		}
		if err != nil {
			return false, err
		}
		data := cm.Data[MeshRootCertKey]
		if _, err := meshpem.Certificates([]byte(data)); err != nil {
			last = fmt.Errorf("ConfigMap %s/%s key %s: %w", IstioNamespace, MeshRootCertConfigMap, MeshRootCertKey, err)
			return false, nil
		}
		pemData = []byte(data)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("mesh root certificate (is istiod running with Options.StockIstiod?): %w (last: %w)", err, last)
	}
	return pemData, nil
}

// WriteMeshRootCert writes MeshRootCert to path.
func (c *ControlPlane) WriteMeshRootCert(ctx context.Context, path string) error {
	data, err := c.MeshRootCert(ctx)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// IstiodClient is what a client of istiod's secure port holds, as a pod in the mesh
// does: the address, the name to verify, the mesh root certificate and a token of
// its ServiceAccount in files.
type IstiodClient struct {
	// Addr is istiod's TLS xDS address (ControlPlane.IstiodSecureAddr).
	Addr string
	// ServerName is the name to verify on istiod's certificate (IstiodServerName).
	ServerName string
	// RootCertFile holds the mesh root certificate.
	RootCertFile string
	// TokenFile holds a token of the ServiceAccount, audience istio-ca.
	TokenFile string
	// Namespace and ServiceAccount are the token's identity; the xDS node must
	// declare Namespace.
	Namespace, ServiceAccount string
}

// IstiodClient writes the mesh root certificate and a token of the ServiceAccount
// namespace/serviceAccount (created when missing) into dir, as root-cert.pem and
// istio-token, and returns the client's settings. It waits for istiod to distribute
// the root certificate.
func (c *ControlPlane) IstiodClient(ctx context.Context, dir, namespace, serviceAccount string) (*IstiodClient, error) {
	if c.IstiodSecureAddr == "" {
		return nil, errors.New("controlplane: istiod's secure port needs Options.StockIstiod")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	ic := &IstiodClient{
		Addr:           c.IstiodSecureAddr,
		ServerName:     IstiodServerName,
		RootCertFile:   filepath.Join(dir, "root-cert.pem"),
		TokenFile:      filepath.Join(dir, "istio-token"),
		Namespace:      namespace,
		ServiceAccount: serviceAccount,
	}
	if err := c.WriteMeshRootCert(ctx, ic.RootCertFile); err != nil {
		return nil, err
	}
	if err := c.WriteServiceAccountToken(ctx, ic.TokenFile, namespace, serviceAccount, TokenOptions{}); err != nil {
		return nil, err
	}
	return ic, nil
}

// Flags are cmd/aeraki's flags for this client.
func (ic *IstiodClient) Flags() []string {
	return []string{
		"--istiod-addr=" + ic.Addr,
		"--istiod-root-cert=" + ic.RootCertFile,
		"--istiod-token=" + ic.TokenFile,
		"--istiod-server-name=" + ic.ServerName,
	}
}

// WriteForeignRootCert writes to path a self-signed CA certificate that nothing here
// chains to: a wrong mesh root for a client of istiod.
func WriteForeignRootCert(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"not the mesh"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create a foreign root certificate: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeFileAtomic replaces path by a file with data, by a rename within its directory.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
