package e2e

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/test/controlplane"
)

// The tests in this file run the controller on the secure path of a stock Istio, with
// no istiod setting changed from its default (controlplane.Options.StockIstiod): TLS
// to istiod's secure port verified against the mesh root certificate from
// istio-ca-root-cert, a token of the ServiceAccount istio-system/aeraki with audience
// istio-ca, which istiod checks with a TokenReview.

// xdsFailures is the metric that counts failed connections to istiod by reason.
const xdsFailures = "aeraki_xds_connection_failures_total"

// startStockControlPlane is startControlPlane with a stock istiod.
func startStockControlPlane(t *testing.T) *env {
	t.Helper()
	cp := controlplane.StartForTest(t, controlplane.Options{StockIstiod: true})
	e := &env{cp: cp, kube: kubernetes.NewForConfigOrDie(cp.RestConfig), istio: istioclient.NewForConfigOrDie(cp.RestConfig)}
	if _, err := e.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// secureOptions are options() on istiod's secure port, as the client ic.
func (e *env) secureOptions(ic *controlplane.IstiodClient) bootstrap.Options {
	opts := e.options()
	opts.IstiodAddr = ic.Addr
	opts.IstiodSecurity = xds.Security{RootCertFile: ic.RootCertFile, ServerName: ic.ServerName, TokenFile: ic.TokenFile}
	return opts
}

// startSecure brings up a stock control plane and one controller on the secure path,
// as the ServiceAccount istio-system/aeraki, stopped at the end of the test.
func startSecure(t *testing.T) *env {
	t.Helper()
	e := startStockControlPlane(t)
	ic, err := e.cp.IstiodClient(t.Context(), t.TempDir(), rootNS, controlplane.AerakiServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	e.runController(t, "controller", e.cp.RestConfig, e.secureOptions(ic))
	return e
}

// TestSecureBinary runs the controller binary as the chart runs it (its default
// secure settings, pointed at the files a pod mounts) against a stock istiod: it
// serves; its metrics go to authorized scrapers only; it reports an identity istiod
// refuses and a root certificate istiod's does not chain to; it follows a token
// replaced on disk when istiod restarts.
func TestSecureBinary(t *testing.T) {
	ctx := t.Context()
	built := controlplane.BuildAerakiForTest(t)
	e := startStockControlPlane(t)
	// As installed, the binary serves routes: the Dubbo port here is shared.
	e.shared = true
	bin := built()

	t.Run("serves", func(t *testing.T) {
		a := startAeraki(t, e, bin)
		d := dubboService{name: "served", host: "served.dubbo.example", vip: "240.240.0.81", iface: "org.example.Served"}
		e.createDubbo(t, d)
		e.waitDubboFilters(t, d, true)
		e.waitListenerFilter(t, d.vip+"_20880", dubboFilter)
		if f := connectionFailures(t, a); len(f) > 0 {
			t.Errorf("connection failures on the secure path: %v", f)
		}
		e.deleteDubbo(t, d)
		e.waitDubboFilters(t, d, false)
	})

	t.Run("routes served to sidecars", func(t *testing.T) { testRouteServer(t, e, bin) })

	t.Run("metrics for authorized scrapers only", func(t *testing.T) { testMetricsAccess(t, e, bin) })

	t.Run("token of another namespace", func(t *testing.T) {
		token := filepath.Join(t.TempDir(), "istio-token")
		if err := e.cp.WriteServiceAccountToken(ctx, token, appNS, controlplane.AerakiServiceAccount, controlplane.TokenOptions{}); err != nil {
			t.Fatal(err)
		}
		a := startAerakiUnready(t, e, bin, "--istiod-token="+token, notLeader)
		waitConnectionFailure(t, a, xds.ReasonPermissionDenied)
		checkNotReady(t, a)
		checkLog(t, a, "install aeraki into "+rootNS)
	})

	t.Run("wrong root certificate", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root-cert.pem")
		if err := controlplane.WriteForeignRootCert(root); err != nil {
			t.Fatal(err)
		}
		a := startAerakiUnready(t, e, bin, "--istiod-root-cert="+root, notLeader)
		waitConnectionFailure(t, a, xds.ReasonTLS)
		checkNotReady(t, a)
	})

	// The kubelet rewrites a pod's token file; the controller must send what the file
	// holds when it connects, not what it read at start. The token it started with is
	// revoked (its ServiceAccount deleted and created again, under the same name) and
	// the file replaced by one of the new ServiceAccount; then istiod restarts, and the
	// controller, which kept running, must reconnect with the new one: the service
	// created meanwhile converges, and istiod never rejects a token.
	t.Run("token replaced while running, istiod restarted", func(t *testing.T) {
		a := startAeraki(t, e, bin)
		before := dubboService{name: "before", host: "before.dubbo.example", vip: "240.240.0.82", iface: "org.example.Before"}
		begin := time.Now()
		e.createDubbo(t, before)
		e.waitDubboFilters(t, before, true)
		t.Logf("EnvoyFilters of the first service in %s", time.Since(begin).Round(time.Millisecond))

		old := readToken(t, a.Istiod.TokenFile)
		if err := e.kube.CoreV1().ServiceAccounts(rootNS).Delete(ctx, controlplane.AerakiServiceAccount, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e.cp.WriteServiceAccountToken(ctx, a.Istiod.TokenFile, rootNS, controlplane.AerakiServiceAccount, controlplane.TokenOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitTokenRefused(t, old)

		if err := e.cp.StopIstiod(); err != nil {
			t.Fatal(err)
		}
		after := dubboService{name: "after", host: "after.dubbo.example", vip: "240.240.0.83", iface: "org.example.After"}
		e.createDubbo(t, after)
		if err := e.cp.StartIstiod(ctx); err != nil { // the parent's context: istiod outlives this subtest
			t.Fatal(err)
		}
		restarted := time.Now()
		e.waitDubboFilters(t, after, true)
		t.Logf("EnvoyFilters of the service created while istiod was down %s after its restart", time.Since(restarted).Round(time.Millisecond))
		e.waitListenerFilter(t, after.vip+"_20880", dubboFilter)
		f := connectionFailures(t, a)
		if f[xds.ReasonUnauthenticated] > 0 || f[xds.ReasonToken] > 0 {
			t.Errorf("istiod rejected the controller's token after the restart: failures %v", f)
		}
		if err := a.Running(); err != nil {
			t.Fatal(err)
		}
	})
}

// startAeraki starts the binary on the secure path, ready, and stops it when t ends.
func startAeraki(t *testing.T, e *env, bin string) *controlplane.Aeraki {
	t.Helper()
	a, err := e.cp.StartAeraki(t.Context(), bin, fastArgs()...)
	return stopAtEnd(t, a, err)
}

// startAerakiUnready starts the binary on the secure path without waiting for it to be
// ready, and stops it when t ends.
func startAerakiUnready(t *testing.T, e *env, bin string, args ...string) *controlplane.Aeraki {
	t.Helper()
	a, err := e.cp.StartAerakiUnready(t.Context(), bin, append(fastArgs(), args...)...)
	return stopAtEnd(t, a, err)
}

// notLeader keeps a controller that is only to report a failure out of leader
// election: stopped while it takes the Lease, it could leave it held until it
// expires, and the next controller would wait for that.
const notLeader = "--leader-elect=false"

// fastArgs are the short debounce and reconnect backoff of options().
func fastArgs() []string {
	return []string{"--debounce-quiet=100ms", "--debounce-max=" + debounceMax.String(), "--settle=" + settle.String(), "--xds-initial-backoff=100ms", "--xds-max-backoff=1s"}
}

func stopAtEnd(t *testing.T, a *controlplane.Aeraki, err error) *controlplane.Aeraki {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("aeraki: %v", err)
		}
		if t.Failed() {
			if log, err := a.Log(); err == nil {
				t.Logf("aeraki log:\n%s", log)
			}
		}
	})
	return a
}

// connectionFailures returns the controller's failed connections to istiod by
// reason, only the reasons counted at least once.
func connectionFailures(t *testing.T, a *controlplane.Aeraki) map[string]float64 {
	t.Helper()
	text, err := a.Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(strings.NewReader(text))
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), xdsFailures+`{reason="`)
		if !ok {
			continue
		}
		reason, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("metrics line %q", s.Text())
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", s.Text(), err)
		}
		if n > 0 {
			out[reason] = n
		}
	}
	return out
}

// waitConnectionFailure waits until the controller has counted a failure of the
// reason.
func waitConnectionFailure(t *testing.T, a *controlplane.Aeraki, reason string) {
	t.Helper()
	var last map[string]float64
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = connectionFailures(t, a)
		return last[reason] > 0, nil
	})
	if err != nil {
		t.Fatalf("the controller never counted a connection failure %q; failures %v", reason, last)
	}
	t.Logf("connection failures: %v", last)
}

// checkNotReady fails t unless the controller's /readyz fails on its xds check.
func checkNotReady(t *testing.T, a *controlplane.Aeraki) {
	t.Helper()
	err := a.Ready(t.Context())
	if err == nil || !strings.Contains(err.Error(), "[-]xds failed") {
		t.Fatalf("/readyz: got %v, want a failing xds check", err)
	}
}

// checkLog fails t unless the controller's log says want.
func checkLog(t *testing.T, a *controlplane.Aeraki, want string) {
	t.Helper()
	log, err := a.Log()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log, want) {
		t.Fatalf("the controller's log does not say %q", want)
	}
}

// waitTokenRefused waits until the apiserver refuses the token for istiod's audience
// (it keeps tokens it accepted in a cache for 10 seconds).
func (e *env) waitTokenRefused(t *testing.T, token string) {
	t.Helper()
	begin := time.Now()
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{controlplane.IstioCAAudience}}}
		got, err := e.kube.AuthenticationV1().TokenReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return !got.Status.Authenticated, nil
	})
	if err != nil {
		t.Fatalf("the revoked token is still accepted: %v", err)
	}
	t.Logf("revoked token refused after %s", time.Since(begin).Round(time.Millisecond))
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
