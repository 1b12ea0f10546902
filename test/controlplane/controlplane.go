// Package controlplane runs a real etcd, kube-apiserver and (optionally)
// istiod on 127.0.0.1, for end-to-end tests and for running the controller
// locally without a cluster.
//
// There is no kube-controller-manager: namespaces are never finalised, nothing
// is garbage collected and no namespace gets a default ServiceAccount (the
// ServiceAccount admission plugin is disabled so pods can still be created).
package controlplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// EnvBinDir names the environment variable that points at the directory
// built by `make testbin` (hack/testbin.sh).
const EnvBinDir = "AERAKI_TESTBIN"

// IstioNamespace is the namespace istiod runs in and the mesh root namespace.
const IstioNamespace = "istio-system"

// Options configures Start.
type Options struct {
	// BinDir holds etcd, kube-apiserver and pilot-discovery. Default: $AERAKI_TESTBIN.
	BinDir string
	// WorkDir receives data, certificates, logs and the kubeconfig. Default: a new
	// temporary directory, removed by Stop.
	WorkDir string
	// Istiod also starts pilot-discovery.
	Istiod bool
	// StockIstiod starts pilot-discovery as a stock install runs it (implies Istiod):
	// its own CA, TLS on the secure xDS port, and the "api" generator served only to
	// authenticated identities of the root namespace. See stockIstiodEnv.
	StockIstiod bool
	// Pilot is the pilot-discovery binary of BinDir that runs as istiod (see
	// Pilots). Default: $AERAKI_PILOT, else Pilots[0], the project's own Istio.
	Pilot string
	// ExtraCRDs are CRD YAML files installed after Istio's CRDs.
	ExtraCRDs []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// ControlPlane is a running control plane. Its methods may be called from
// several goroutines.
type ControlPlane struct {
	// RestConfig is an admin (system:masters) config that verifies the
	// apiserver's serving certificate.
	RestConfig *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file with the same identity.
	Kubeconfig string
	// IstiodAddr is host:port of istiod's plaintext xDS gRPC; "" without istiod.
	IstiodAddr string
	// IstiodHTTPAddr is host:port of istiod's HTTP server (/ready, /debug); "" without istiod.
	IstiodHTTPAddr string
	// IstiodMonitoringAddr is host:port of istiod's Prometheus /metrics; "" without istiod.
	IstiodMonitoringAddr string
	// IstiodSecureAddr is host:port of istiod's TLS xDS gRPC (a stock install's 15012);
	// "" unless Options.StockIstiod. Its certificate carries IstiodServerName.
	IstiodSecureAddr string
	// WorkDir is the directory holding data, certificates, logs and the kubeconfig.
	WorkDir string

	opts        Options
	removeWork  bool
	ports       ports
	adminToken  string
	mu          sync.Mutex
	etcd        *process
	apiserver   *process
	istiod      *process
	stopped     bool
	lastStopErr error
}

// ports are picked once, so every restart comes back on the same address.
type ports struct {
	etcdClient, etcdPeer                         int
	apiserver                                    int
	istiodGRPC, istiodHTTP, istiodMon, istiodCtl int
	istiodSecure, istiodHTTPS                    int
}

// Start starts etcd and kube-apiserver, installs Istio's CRDs, ours and opts.ExtraCRDs,
// creates the istio-system namespace and, with opts.Istiod, starts istiod.
// The processes live until Stop or until ctx is canceled. On error every
// process already started is stopped.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv(EnvBinDir)
	}
	if opts.StockIstiod {
		opts.Istiod = true
	}
	if err := checkBinaries(opts); err != nil {
		return nil, err
	}
	c := &ControlPlane{opts: opts, WorkDir: opts.WorkDir}
	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "aeraki-controlplane-")
		if err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		c.WorkDir, c.removeWork = dir, true
	}
	if err := c.start(ctx); err != nil {
		// Keep the work dir: its logs explain the failure.
		c.removeWork = false
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// pilot is the pilot-discovery binary istiod runs from.
func (o Options) pilot() string { return cmp.Or(o.Pilot, os.Getenv(EnvPilot), Pilots[0]) }

func checkBinaries(opts Options) error {
	if opts.BinDir == "" {
		return fmt.Errorf("controlplane: no binaries: set %s (run `make testbin`, which prints the directory)", EnvBinDir)
	}
	names := []string{"etcd", "kube-apiserver"}
	if opts.Istiod {
		names = append(names, opts.pilot())
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(opts.BinDir, name)); err != nil {
			return fmt.Errorf("controlplane: %s missing in %s=%s (run `make testbin`): %w", name, EnvBinDir, opts.BinDir, err)
		}
	}
	return nil
}

func (c *ControlPlane) start(ctx context.Context) error {
	for _, d := range []string{"etcd", "apiserver", "istiod"} {
		if err := os.MkdirAll(filepath.Join(c.WorkDir, d), 0o750); err != nil {
			return fmt.Errorf("create work dir: %w", err)
		}
	}
	free, err := freePorts(9)
	if err != nil {
		return err
	}
	c.ports = ports{
		etcdClient: free[0], etcdPeer: free[1], apiserver: free[2],
		istiodGRPC: free[3], istiodHTTP: free[4], istiodMon: free[5], istiodCtl: free[6],
		istiodSecure: free[7], istiodHTTPS: free[8],
	}
	if err := c.writeAPIServerFiles(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	begin := time.Now()
	if err := c.installCRDs(ctx); err != nil {
		return err
	}
	if err := c.createNamespaces(ctx, IstioNamespace, "default"); err != nil {
		return err
	}
	c.opts.Logf("controlplane: CRDs and namespaces ready in %s", time.Since(begin).Round(time.Millisecond))
	if c.opts.Istiod {
		c.setIstiodAddrs()
		if err := c.StartIstiod(ctx); err != nil {
			return err
		}
	}
	return nil
}

// freePorts returns n distinct free ports on 127.0.0.1, taken below the
// kernel's ephemeral range. A port the kernel hands out for ":0" is free only
// until a process is started on it seconds later, and in between any
// outgoing connection (the apiserver's to etcd, a client's to the apiserver)
// may take it as its local port; ports outside the ephemeral range are never
// given to outgoing connections. All listeners stay open until every port is
// known, so no port is handed out twice.
func freePorts(n int) ([]int, error) {
	lo, hi := portPool()
	var out []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("pick a free port: none free in %d-%d", lo, hi)
		}
		port := lo + rand.IntN(hi-lo) //nolint:gosec // a port number, not a secret
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		listeners = append(listeners, l)
		out = append(out, port)
	}
	return out, nil
}

// portPool returns the ports [lo, hi) that freePorts draws from: the
// registered ports below the ephemeral range that
// /proc/sys/net/ipv4/ip_local_port_range reports (Linux's default,
// 32768, where the file cannot be read).
func portPool() (lo, hi int) {
	const floor, fallback = 10000, 32768
	hi = fallback
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > floor+1000 {
				hi = v
			}
		}
	}
	return floor, hi
}

// Stop stops every process it started (istiod, apiserver, etcd, in that
// order), waiting for each to exit, and removes a WorkDir that Start created.
// It returns an error if a process had died on its own. Calling it again is
// a no-op that returns the first result.
func (c *ControlPlane) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.lastStopErr
	}
	c.stopped = true
	var errs []error
	for _, p := range []**process{&c.istiod, &c.apiserver, &c.etcd} {
		if *p != nil {
			errs = append(errs, (*p).stop())
		}
	}
	if c.removeWork {
		errs = append(errs, os.RemoveAll(c.WorkDir))
	}
	c.lastStopErr = errors.Join(errs...)
	return c.lastStopErr
}

// stopOne stops the process in *slot, if any, and clears the slot.
func (c *ControlPlane) stopOne(slot **process) error {
	c.mu.Lock()
	p := *slot
	*slot = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	begin := time.Now()
	err := p.stop()
	c.opts.Logf("controlplane: %s stopped in %s", p.name, time.Since(begin).Round(time.Millisecond))
	return err
}

// setOne records a started process, unless Stop has already run.
func (c *ControlPlane) setOne(slot **process, p *process) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.Join(fmt.Errorf("controlplane: stopped while starting %s", p.name), p.stop())
	}
	if *slot != nil && !(*slot).exited() {
		return errors.Join(fmt.Errorf("controlplane: %s already running", p.name), p.stop())
	}
	*slot = p
	return nil
}

// checkNotRunning fails early, before a second process fights over the port.
func (c *ControlPlane) checkNotRunning(slot **process, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return fmt.Errorf("controlplane: stopped; cannot start %s", name)
	}
	if *slot != nil && !(*slot).exited() {
		return fmt.Errorf("controlplane: %s already running (pid %d)", name, (*slot).pid())
	}
	return nil
}

// pids returns the PIDs of the running processes, by name.
func (c *ControlPlane) pids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, p := range []*process{c.etcd, c.apiserver, c.istiod} {
		if p != nil {
			out[p.name] = p.pid()
		}
	}
	return out
}

// FreeAddrs returns n distinct host:port addresses of free ports on 127.0.0.1.
func FreeAddrs(n int) ([]string, error) {
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i, p := range ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out, nil
}
