package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APIAudience is the apiserver's own audience, its service-account issuer: a token
// for it is what the kubelet mounts into a pod for the API, and what a TokenReview
// without audiences accepts.
const APIAudience = "https://kubernetes.default.svc.cluster.local"

const (
	etcdTimeout      = 30 * time.Second
	apiserverTimeout = 90 * time.Second
	adminUser        = "aeraki-admin"
)

func (c *ControlPlane) etcdURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.etcdClient))
}

func (c *ControlPlane) apiserverURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.apiserver))
}

func (c *ControlPlane) startEtcd(ctx context.Context) error {
	begin := time.Now()
	peer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.etcdPeer))
	args := []string{
		"--name=default",
		"--data-dir=" + filepath.Join(c.WorkDir, "etcd", "data"),
		"--listen-client-urls=" + c.etcdURL(),
		"--advertise-client-urls=" + c.etcdURL(),
		// Set even for one member: the default peer port 2380 would collide
		// between parallel control planes.
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
		// Test data: durability is not worth the fsync latency.
		"--unsafe-no-fsync=true",
	}
	p, err := startProcess(ctx, spec{
		name: "etcd",
		bin:  filepath.Join(c.opts.BinDir, "etcd"),
		dir:  filepath.Join(c.WorkDir, "etcd"),
		args: args,
	})
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = p.waitReady(ctx, etcdTimeout, func(ctx context.Context) error {
		body, err := get(ctx, client, c.etcdURL()+"/health", "")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"health":"true"`) {
			return fmt.Errorf("etcd health: %s", body)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("start etcd: %w", stopAfter(err, p))
	}
	if err := c.setOne(&c.etcd, p); err != nil {
		return err
	}
	c.opts.Logf("controlplane: etcd ready on %s in %s", c.etcdURL(), time.Since(begin).Round(time.Millisecond))
	return nil
}

// writeAPIServerFiles writes the token file and the service-account key pair
// that every run of kube-apiserver shares.
func (c *ControlPlane) writeAPIServerFiles() error {
	dir := filepath.Join(c.WorkDir, "apiserver")
	token := make([]byte, 24)
	if _, err := rand.Read(token); err != nil {
		return fmt.Errorf("generate admin token: %w", err)
	}
	c.adminToken = hex.EncodeToString(token)
	// Format: token,user,uid,"group,..."
	line := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", c.adminToken, adminUser, adminUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(line), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("marshal service-account public key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), priv, 0o600); err != nil {
		return fmt.Errorf("write service-account key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return fmt.Errorf("write service-account public key: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver on its address against the same etcd
// and waits for /readyz. The process lives until StopAPIServer, Stop or the
// end of ctx, so ctx must outlive it (see StartIstiod).
func (c *ControlPlane) StartAPIServer(ctx context.Context) error {
	if err := c.checkNotRunning(&c.apiserver, "kube-apiserver"); err != nil {
		return err
	}
	begin := time.Now()
	dir := filepath.Join(c.WorkDir, "apiserver")
	certDir := filepath.Join(dir, "certs")
	args := []string{
		"--etcd-servers=" + c.etcdURL(),
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.apiserver),
		// The default reconciler writes the advertise address into the
		// kubernetes Endpoints and rejects loopback.
		"--endpoint-reconciler-type=none",
		// Self-signed and kept across restarts, so RestConfig stays valid.
		"--cert-dir=" + certDir,
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=" + APIAudience,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No controller-manager creates default ServiceAccounts, which this
		// plugin would demand of every pod.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	}
	p, err := startProcess(ctx, spec{
		name: "kube-apiserver",
		bin:  filepath.Join(c.opts.BinDir, "kube-apiserver"),
		dir:  dir,
		args: args,
		// On SIGTERM it stops listening at once but then waits up to a minute
		// for open watches (istiod's) to end; its state is all in etcd.
		grace: time.Second,
	})
	if err != nil {
		return err
	}
	var ca []byte
	err = p.waitReady(ctx, apiserverTimeout, func(ctx context.Context) error {
		// Re-read each time: the file may be half written on the first tries.
		chain, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")) //nolint:gosec // the cert the apiserver we started wrote
		if err != nil {
			return fmt.Errorf("read serving certificate: %w", err)
		}
		client, err := verifyingClient(chain)
		if err != nil {
			return err
		}
		if _, err := get(ctx, client, c.apiserverURL()+"/readyz", c.adminToken); err != nil {
			return err
		}
		ca = chain
		return nil
	})
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", stopAfter(err, p))
	}
	if err := c.setOne(&c.apiserver, p); err != nil {
		return err
	}
	if c.RestConfig == nil {
		if err := c.writeKubeconfig(ca); err != nil {
			return err
		}
	}
	c.opts.Logf("controlplane: kube-apiserver ready on %s in %s", c.apiserverURL(), time.Since(begin).Round(time.Millisecond))
	return nil
}

// StopAPIServer stops kube-apiserver and leaves etcd (and istiod) running.
func (c *ControlPlane) StopAPIServer() error {
	return c.stopOne(&c.apiserver)
}

func (c *ControlPlane) writeKubeconfig(ca []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["controlplane"] = &clientcmdapi.Cluster{Server: c.apiserverURL(), CertificateAuthorityData: ca}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: c.adminToken}
	cfg.Contexts["controlplane"] = &clientcmdapi.Context{Cluster: "controlplane", AuthInfo: adminUser, Namespace: "default"}
	cfg.CurrentContext = "controlplane"
	path := filepath.Join(c.WorkDir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	c.Kubeconfig = path
	c.RestConfig = &rest.Config{
		Host:            c.apiserverURL(),
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		// Tests create objects in bursts; client-side throttling only slows them.
		QPS:   100,
		Burst: 200,
	}
	return nil
}

func verifyingClient(caPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in serving certificate file")
	}
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

// get returns the body of a 200 response, or an error naming the status.
func get(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
