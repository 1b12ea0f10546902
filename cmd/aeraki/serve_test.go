package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/xds"
)

// A kubeconfig file must not bring client-go's default rate limit (5 requests a
// second) with it: the first push of a large mesh writes thousands of EnvoyFilters.
func TestRestConfigFromKubeconfigIsNotRateLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS >= 0 || cfg.RateLimiter != nil {
		t.Errorf("QPS %v, RateLimiter %v; want client-side rate limiting off (negative QPS)", cfg.QPS, cfg.RateLimiter)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Errorf("host %q: the kubeconfig was not read", cfg.Host)
	}
}

// The flags of the connection to istiod: secure by default, with the paths the
// Deployment mounts (other parts rely on these names and defaults).
func TestIstiodFlags(t *testing.T) {
	parse := func(args ...string) bootstrap.Options {
		t.Helper()
		fs := flag.NewFlagSet("aeraki", flag.ContinueOnError)
		var o bootstrap.Options
		istiodFlags(fs, &o)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	o := parse()
	want := xds.Security{RootCertFile: "/var/run/secrets/istio/root-cert.pem", TokenFile: "/var/run/secrets/tokens/istio-token"}
	if o.IstiodAddr != "istiod.istio-system.svc:15012" || o.IstiodSecurity != want {
		t.Errorf("defaults: address %q, security %+v; want istiod.istio-system.svc:15012, %+v", o.IstiodAddr, o.IstiodSecurity, want)
	}
	o = parse("--istiod-addr=127.0.0.1:15010", "--istiod-plaintext", "--istiod-root-cert=/r", "--istiod-token=/t", "--istiod-server-name=istiod.x.svc",
		"--istiod-version=1.30.2")
	want = xds.Security{Plaintext: true, RootCertFile: "/r", TokenFile: "/t", ServerName: "istiod.x.svc"}
	if o.IstiodAddr != "127.0.0.1:15010" || o.IstiodSecurity != want || o.IstiodVersion != "1.30.2" {
		t.Errorf("set: address %q, security %+v, version %q; want %+v, 1.30.2", o.IstiodAddr, o.IstiodSecurity, o.IstiodVersion, want)
	}
}

// The route server's flags: on by default on the port the Service exposes, and its
// host is the controller's Service unless set.
func TestRouteServerFlags(t *testing.T) {
	parse := func(args ...string) (bootstrap.RouteServerOptions, error) {
		t.Helper()
		fs := flag.NewFlagSet("aeraki", flag.ContinueOnError)
		var o bootstrap.RouteServerOptions
		routeServerFlags(fs, &o)
		return o, fs.Parse(args)
	}
	o, err := parse()
	if err != nil || o != (bootstrap.RouteServerOptions{Addr: ":15080", Port: 15080, TrustDomain: "cluster.local"}) {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = parse("--route-server-addr=", "--route-server-host=routes.example", "--route-server-port=9443", "--trust-domain=corp.example")
	if err != nil || o != (bootstrap.RouteServerOptions{Host: "routes.example", Port: 9443, TrustDomain: "corp.example"}) {
		t.Errorf("set: %+v, %v", o, err)
	}
	for _, bad := range []string{"0", "65536", "x"} {
		if _, err := parse("--route-server-port=" + bad); err == nil {
			t.Errorf("--route-server-port=%s accepted", bad)
		}
	}
	t.Setenv("POD_NAMESPACE", "mesh-system")
	if got := defaultRouteServerHost(bootstrap.Options{RootNamespace: "istio-system", DomainSuffix: "corp.local"}); got != "aeraki.mesh-system.svc.corp.local" {
		t.Errorf("default host %q", got)
	}
}

// Metrics are served over HTTPS with authentication and authorization unless a local
// run turns that off explicitly.
func TestMetricsFlags(t *testing.T) {
	parse := func(args ...string) (kube.Options, error) {
		t.Helper()
		fs := flag.NewFlagSet("aeraki", flag.ContinueOnError)
		var o kube.Options
		metricsFlags(fs, &o)
		return o, fs.Parse(args)
	}
	for _, c := range []struct {
		args []string
		want kube.Options
	}{
		{nil, kube.Options{MetricsAddr: ":8443"}},
		{[]string{"--metrics-secure"}, kube.Options{MetricsAddr: ":8443"}},
		{[]string{"--metrics-secure=true", "--metrics-cert-dir=/certs"}, kube.Options{MetricsAddr: ":8443", MetricsCertDir: "/certs"}},
		{[]string{"--metrics-secure=false", "--metrics-addr=127.0.0.1:8080"}, kube.Options{MetricsAddr: "127.0.0.1:8080", InsecureMetrics: true}},
	} {
		o, err := parse(c.args...)
		if err != nil || o != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.args, o, err, c.want)
		}
	}
	if _, err := parse("--metrics-secure=maybe"); err == nil {
		t.Error("--metrics-secure=maybe accepted")
	}
	var stderr strings.Builder
	if code := serve([]string{"--metrics-secure=false", "--metrics-cert-dir=/certs"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--metrics-cert-dir") {
		t.Errorf("a certificate for plain HTTP: exit %d, %q; want 2 and the flag named", code, stderr.String())
	}
}

// A debounce ceiling under twice the settle is refused: it would cut the settle short.
func TestSettleFlags(t *testing.T) {
	var stderr strings.Builder
	if code := serve([]string{"--settle=2s", "--debounce-max=3s"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--settle") {
		t.Errorf("a ceiling under twice the settle: exit %d, %q; want 2 and the flags named", code, stderr.String())
	}
}

// The soft memory limit is 90% of the container's, unless GOMEMLIMIT says otherwise.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		gomemlimit, container string
		want                  int64
		ok                    bool
	}{
		{"", "536870912", 483183819, true}, // 512Mi / 10 * 9
		{"400MiB", "536870912", 0, false},
		{"", "", 0, false},
		{"", "0", 0, false},
		{"", "lots", 0, false},
	} {
		got, ok := memoryLimit(c.gomemlimit, c.container)
		if got != c.want || ok != c.ok {
			t.Errorf("memoryLimit(%q, %q) = %d, %v; want %d, %v", c.gomemlimit, c.container, got, ok, c.want, c.ok)
		}
	}
}
