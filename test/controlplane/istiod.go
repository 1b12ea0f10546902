package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const istiodTimeout = 60 * time.Second

// EnvPilot names the pilot-discovery binary the control planes run unless
// Options.Pilot says otherwise (one of Pilots).
const EnvPilot = "AERAKI_PILOT"

// Pilots are the istiods hack/testbin.sh builds, newest first: pilot-discovery from
// the project's go.mod, and pilot-discovery-1.30 from the oldest Istio snapshot the
// module proxy serves (see hack/testbin.sh). The compatibility test runs each.
var Pilots = []string{"pilot-discovery", "pilot-discovery-1.30"}

// meshConfig is the smallest mesh config that puts EnvoyFilters of the root
// namespace in scope for every proxy.
const meshConfig = "rootNamespace: " + IstioNamespace + "\n"

// istiodEnv is what istiod needs to run outside a pod without a CA:
// no certificates to mint, no service-account JWTs, and (Istio 1.31+) no
// authentication demanded of Generator "api" clients on plaintext xDS.
// ENABLE_DEBUG_ENDPOINT_AUTH=false serves the debug types (syncz, config
// dumps) to unauthenticated clients too: plaintext xDS carries no identity,
// and SyncStatus reads syncz there.
var istiodEnv = []string{
	"POD_NAMESPACE=" + IstioNamespace,
	"POD_NAME=istiod-local",
	"REVISION=default",
	"ENABLE_CA_SERVER=false",
	"PILOT_ENABLE_ANALYSIS=false",
	"JWT_POLICY=none",
	"ENABLE_XDS_API_GENERATOR_AUTH=false",
	"ENABLE_DEBUG_ENDPOINT_AUTH=false",
	"ISTIOD_CUSTOM_HOST=localhost",
}

// StartIstiod starts pilot-discovery on the addresses it had before (or new
// ones the first time) and waits for its /ready. The process lives until
// StopIstiod, Stop or the end of ctx, so ctx must outlive it: in a test, pass
// the test's context, not a subtest's t.Context().
func (c *ControlPlane) StartIstiod(ctx context.Context) error {
	if err := c.checkNotRunning(&c.istiod, "istiod"); err != nil {
		return err
	}
	begin := time.Now()
	pilot := c.opts.pilot()
	bin := filepath.Join(c.opts.BinDir, pilot)
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("controlplane: %s missing in %s=%s (run `make testbin`): %w", pilot, EnvBinDir, c.opts.BinDir, err)
	}
	if c.IstiodAddr == "" { // started without Options.Istiod
		c.setIstiodAddrs()
	}

	dir := filepath.Join(c.WorkDir, "istiod")
	mesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(meshConfig), 0o600); err != nil {
		return fmt.Errorf("write mesh config: %w", err)
	}
	args := []string{
		"discovery",
		"--kubeconfig=" + c.Kubeconfig,
		"--meshConfig=" + mesh,
		"--networksConfig=/dev/null",
		"--grpcAddr=" + c.IstiodAddr,
		"--httpAddr=" + c.IstiodHTTPAddr,
		"--monitoringAddr=" + c.IstiodMonitoringAddr,
		// ControlZ defaults to the fixed port 9876: parallel istiods would collide.
		"--ctrlz_address=127.0.0.1",
		"--ctrlz_port=" + strconv.Itoa(c.ports.istiodCtl),
		// The default 10s grace would make every restart test 10s slower.
		"--shutdownDuration=1s",
	}
	env := istiodEnv
	if c.opts.StockIstiod {
		env, args = stockIstiodEnv, append(args, c.stockIstiodArgs()...)
	} else {
		// Empty disables the webhook server and the mTLS xDS port, both of
		// which need certificates.
		args = append(args, "--httpsAddr=", "--secureGRPCAddr=")
	}
	p, err := startProcess(ctx, spec{name: "istiod", bin: bin, dir: dir, args: args, env: env})
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = p.waitReady(ctx, istiodTimeout, func(ctx context.Context) error {
		if _, err := get(ctx, client, "http://"+c.IstiodHTTPAddr+"/ready", ""); err != nil {
			return err
		}
		return c.secureListening(ctx)
	})
	if err != nil {
		return fmt.Errorf("start istiod: %w", stopAfter(err, p))
	}
	if err := c.setOne(&c.istiod, p); err != nil {
		return err
	}
	addrs := c.IstiodAddr
	if c.IstiodSecureAddr != "" {
		addrs += " and " + c.IstiodSecureAddr + " (TLS)"
	}
	c.opts.Logf("controlplane: istiod (%s) ready on %s in %s", pilot, addrs, time.Since(begin).Round(time.Millisecond))
	return nil
}

func (c *ControlPlane) setIstiodAddrs() {
	c.IstiodAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.istiodGRPC))
	c.IstiodHTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.istiodHTTP))
	c.IstiodMonitoringAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.istiodMon))
	if c.opts.StockIstiod {
		c.IstiodSecureAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports.istiodSecure))
	}
}

// StopIstiod stops istiod; apiserver and etcd keep running.
func (c *ControlPlane) StopIstiod() error {
	return c.stopOne(&c.istiod)
}
