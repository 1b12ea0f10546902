package controlplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

const (
	aerakiTimeout = 90 * time.Second
	// metricsLimit bounds a /metrics body; the controller's is far smaller.
	metricsLimit = 16 << 20
)

// Aeraki is the controller built from cmd/aeraki, running as a child process of the
// test against this control plane: what a Deployment runs, with its own client
// settings and its own memory.
type Aeraki struct {
	// MetricsAddr is host:port of its Prometheus /metrics, served as installed: over
	// HTTPS to clients the apiserver authenticates and authorizes.
	MetricsAddr string
	// MetricsCA is the certificate authority of the metrics server's certificate
	// (--metrics-cert-dir), issued for 127.0.0.1; MetricsCAFile holds it as PEM.
	MetricsCA     *x509.CertPool
	MetricsCAFile string
	// ProbeAddr is host:port of its /healthz and /readyz.
	ProbeAddr string
	// RouteServerAddr is host:port of its route server (on the secure path only).
	RouteServerAddr string
	// LogPath is the file that collects its stdout and stderr.
	LogPath string
	// Istiod is its client's files and identity on istiod's secure port (nil in
	// plaintext): a test may replace its token or root certificate file.
	Istiod *IstiodClient

	p *process
	// adminToken is the control plane's admin token, which Metrics sends.
	adminToken string
}

// BuildAeraki builds cmd/aeraki into dir and returns the binary's path. It runs the go
// command found in PATH in the current directory, which must lie inside this module
// (a test's does).
func BuildAeraki(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "aeraki")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "aeraki.io/aeraki/cmd/aeraki")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build cmd/aeraki: %w\n%s", err, out)
	}
	return bin, nil
}

// BuildAerakiForTest links cmd/aeraki into a directory of t in the background (while
// the control plane starts) and returns a function that waits for the binary and
// fails t if the build failed.
func BuildAerakiForTest(t testing.TB) func() string {
	t.Helper()
	type build struct {
		bin string
		err error
	}
	built := make(chan build, 1)
	dir := t.TempDir()
	var building sync.WaitGroup
	building.Go(func() {
		begin := time.Now()
		bin, err := BuildAeraki(t.Context(), dir)
		t.Logf("built cmd/aeraki in %s", time.Since(begin).Round(time.Millisecond))
		built <- build{bin, err}
	})
	// On an early failure, the build ends (the context is canceled) before dir goes.
	t.Cleanup(building.Wait)
	return func() string {
		t.Helper()
		b := <-built
		if b.err != nil {
			t.Fatal(b.err)
		}
		return b.bin
	}
}

// AerakiServiceAccount is the controller's ServiceAccount in the root namespace, as
// the chart installs it: its identity towards istiod on the secure path.
const AerakiServiceAccount = "aeraki"

// StartAeraki starts the controller binary bin against this control plane with the
// admin kubeconfig, the root namespace istio-system, the leader election Lease in it,
// and metrics and probes on free loopback ports. Towards istiod it connects as
// installed: with Options.StockIstiod to the secure port, verifying istiod against the
// mesh root certificate and authenticating with a token of the ServiceAccount
// istio-system/aeraki (Aeraki.Istiod says where those files are); otherwise in
// plaintext; on the secure path its route server listens on a free loopback port
// (Aeraki.RouteServerAddr). args come after those flags, so a flag given there wins. It waits until
// /readyz passes (Kubernetes caches and istiod's config synced). The process runs
// until Stop or the end of ctx; its log is aeraki/aeraki.log in WorkDir.
func (c *ControlPlane) StartAeraki(ctx context.Context, bin string, args ...string) (*Aeraki, error) {
	return c.startAeraki(ctx, bin, "/readyz", args)
}

// StartAerakiUnready starts the controller as StartAeraki does but waits only until
// it serves /healthz, ready or not: for a controller that is to report a failure
// (Aeraki.Ready, Aeraki.Metrics).
func (c *ControlPlane) StartAerakiUnready(ctx context.Context, bin string, args ...string) (*Aeraki, error) {
	return c.startAeraki(ctx, bin, "/healthz", args)
}

func (c *ControlPlane) startAeraki(ctx context.Context, bin, probe string, args []string) (*Aeraki, error) {
	if c.IstiodAddr == "" || c.Kubeconfig == "" {
		return nil, errors.New("controlplane: aeraki needs the apiserver and istiod: start with Options.Istiod")
	}
	dir := filepath.Join(c.WorkDir, "aeraki")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	free, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	a := &Aeraki{
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(free[0])),
		ProbeAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(free[1])),
		adminToken:  c.adminToken,
	}
	certDir := filepath.Join(dir, "metrics-certs")
	if a.MetricsCA, err = writeServingCert(certDir); err != nil {
		return nil, err
	}
	a.MetricsCAFile = filepath.Join(certDir, "tls.crt") // self-signed: its own CA
	istiod := []string{"--istiod-addr=" + c.IstiodAddr, "--istiod-plaintext"}
	if c.IstiodSecureAddr != "" {
		// Files of its own, so that a test may replace them under one controller.
		clientDir, err := os.MkdirTemp(dir, "istiod-client-")
		if err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		if a.Istiod, err = c.IstiodClient(ctx, clientDir, IstioNamespace, AerakiServiceAccount); err != nil {
			return nil, err
		}
		istiod = a.Istiod.Flags()
		a.RouteServerAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(free[2]))
		istiod = append(istiod, "--route-server-addr="+a.RouteServerAddr)
	}
	flags := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--root-namespace=" + IstioNamespace,
		"--leader-election-namespace=" + IstioNamespace,
		"--metrics-addr=" + a.MetricsAddr,
		"--metrics-cert-dir=" + certDir,
		"--probe-addr=" + a.ProbeAddr,
	}
	begin := time.Now()
	p, err := startProcess(ctx, spec{name: "aeraki", bin: bin, dir: dir, args: slices.Concat(istiod, flags, args)})
	if err != nil {
		return nil, err
	}
	a.p, a.LogPath = p, p.logPath
	client := &http.Client{Timeout: 2 * time.Second}
	err = p.waitReady(ctx, aerakiTimeout, func(ctx context.Context) error {
		_, err := get(ctx, client, "http://"+a.ProbeAddr+probe, "")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start aeraki: %w", stopAfter(err, p))
	}
	c.opts.Logf("controlplane: aeraki (pid %d) serving %s in %s", p.pid(), probe, time.Since(begin).Round(time.Millisecond))
	return a, nil
}

// Ready returns nil if the controller's /readyz passes, and otherwise an error with
// the verbose answer, which names the failing checks (controller-runtime withholds
// their reasons: the log and the metrics have them).
func (a *Aeraki) Ready(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	_, err := get(ctx, client, "http://"+a.ProbeAddr+"/readyz?verbose", "")
	return err
}

// PID is the controller's process id.
func (a *Aeraki) PID() int { return a.p.pid() }

// Running returns nil while the controller runs, and once it has exited an error
// with the end of its log.
func (a *Aeraki) Running() error {
	if !a.p.exited() {
		return nil
	}
	if a.p.waitErr == nil {
		return fmt.Errorf("aeraki exited with status 0\n%s", a.p.logTail())
	}
	return fmt.Errorf("aeraki exited: %w\n%s", a.p.waitErr, a.p.logTail())
}

// PeakRSS returns the controller's peak resident set size in bytes (VmHWM of
// /proc/<pid>/status, Linux only). The process must still be running.
func (a *Aeraki) PeakRSS() (int64, error) {
	return a.statusBytes("VmHWM")
}

// RSS returns the controller's resident set size now in bytes (VmRSS of
// /proc/<pid>/status, Linux only).
func (a *Aeraki) RSS() (int64, error) {
	return a.statusBytes("VmRSS")
}

// OpenFDs returns how many file descriptors the controller holds open (the entries
// of /proc/<pid>/fd, Linux only): its sockets to the apiserver and istiod among them.
func (a *Aeraki) OpenFDs() (int, error) {
	if a.p.exited() {
		return 0, errors.New("aeraki has exited")
	}
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(a.PID()), "fd"))
	if err != nil {
		return 0, fmt.Errorf("count the open files of aeraki: %w", err)
	}
	return len(fds), nil
}

// statusBytes reads a size field of the controller's /proc/<pid>/status ("VmHWM",
// in kB there) in bytes. The process must still be running: its memory is gone
// with it.
func (a *Aeraki) statusBytes(field string) (int64, error) {
	if a.p.exited() {
		return 0, fmt.Errorf("aeraki has exited: its %s is gone with it", field)
	}
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(a.PID()), "status"))
	if err != nil {
		return 0, fmt.Errorf("read the %s of aeraki: %w", field, err)
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), field+":")
		if !ok {
			continue
		}
		kb, ok := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok {
			return 0, fmt.Errorf("%s %q: want a size in kB", field, rest)
		}
		n, err := strconv.ParseInt(kb, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %w", field, rest, err)
		}
		return n << 10, nil
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", field)
}

// Metrics returns the controller's /metrics in Prometheus text format, fetched as
// the control plane's admin.
func (a *Aeraki) Metrics(ctx context.Context) (string, error) {
	code, body, err := a.GetMetrics(ctx, a.adminToken)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("aeraki metrics: %d %s: %s", code, http.StatusText(code), strings.TrimSpace(body))
	}
	return body, nil
}

// StatusArgs are the flags of `aeraki status` that reach this controller as the
// control plane's admin, whose token it writes into dir.
func (a *Aeraki) StatusArgs(dir string) ([]string, error) {
	token := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(token, []byte(a.adminToken), 0o600); err != nil {
		return nil, err
	}
	return []string{"--addr=https://" + a.MetricsAddr, "--token-file=" + token, "--ca-file=" + a.MetricsCAFile}, nil
}

// GetMetrics GETs the controller's /metrics over TLS verified against MetricsCA,
// with token as the bearer token (none when empty), and returns the status and body.
func (a *Aeraki) GetMetrics(ctx context.Context, token string) (int, string, error) {
	return a.get(ctx, "/metrics", token)
}

// Status returns the controller's status (what `aeraki status` reads, JSON),
// fetched as the control plane's admin.
func (a *Aeraki) Status(ctx context.Context) (string, error) {
	code, body, err := a.get(ctx, "/debug/status", a.adminToken)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("aeraki status: %d %s: %s", code, http.StatusText(code), strings.TrimSpace(body))
	}
	return body, nil
}

// get GETs path of the metrics server as GetMetrics does.
func (a *Aeraki) get(ctx context.Context, path, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+a.MetricsAddr+path, http.NoBody)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.MetricsCA, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("aeraki metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, metricsLimit))
	if err != nil {
		return 0, "", fmt.Errorf("aeraki metrics: %w", err)
	}
	return resp.StatusCode, string(body), nil
}

// writeServingCert writes a certificate for 127.0.0.1 and its key into dir, as
// --metrics-cert-dir reads them, and returns the pool of the CA that signed it.
func writeServingCert(dir string) (*x509.CertPool, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics serving certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create metrics certificate dir: %w", err)
	}
	// The names of kube.MetricsCertFile and MetricsKeyFile (pkg/kube's tests import
	// this package, so it cannot import that one).
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("write metrics serving certificate: %w", err)
		}
	}
	// The file holds the certificate, then the CA that signed it: trust the CA only.
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("metrics serving certificate: %w", err)
	}
	if len(certs) != 2 || !certs[1].IsCA {
		return nil, fmt.Errorf("metrics serving certificate: want a certificate and its CA, got %d certificates", len(certs))
	}
	pool := x509.NewCertPool()
	pool.AddCert(certs[1])
	return pool, nil
}

// Log returns what the controller has logged so far.
func (a *Aeraki) Log() (string, error) {
	data, err := os.ReadFile(filepath.Clean(a.LogPath))
	return string(data), err
}

// Stop sends SIGTERM to the controller (SIGKILL after a grace period) and waits for
// it to exit. It returns an error if the controller had died on its own. Calling it
// again returns the same result.
func (a *Aeraki) Stop() error {
	return a.p.stop()
}
