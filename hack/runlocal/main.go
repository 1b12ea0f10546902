// Command runlocal runs the controller on a local control plane (etcd,
// kube-apiserver and istiod on 127.0.0.1), applies the Dubbo sample, and shows
// the EnvoyFilters it produced, the listener istiod then serves to a sidecar, and the
// routes that sidecar fetches from the controller's route server. Ctrl-C stops
// everything it started. Run it with `make run-local`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/pkg/xds"
	dubboplugin "aeraki.io/aeraki/plugin/dubbo"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	sample       = "demo/dubbo/dubbo-sample.yaml"
	listenerName = "240.240.0.20_20881"
	// routeServer is where the controller serves routes; sidecars in a cluster dial
	// its Service, this one dials the address.
	routeServer = "127.0.0.1:15080"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "run-local:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zap.New(zap.UseDevMode(false), zap.StacktraceLevel(zapcore.DPanicLevel))
	ctrl.SetLogger(log)

	say("starting etcd, kube-apiserver and istiod (its defaults: own CA, authenticated xDS) on 127.0.0.1 ...")
	// Not bound to ctx: on Ctrl-C the controller stops first, then the control plane.
	cp, err := controlplane.Start(context.WithoutCancel(ctx), controlplane.Options{StockIstiod: true})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the control plane")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	kubectl := filepath.Join(os.Getenv(controlplane.EnvBinDir), "kubectl")
	say("control plane up; kubeconfig: %s", cp.Kubeconfig)

	// The controller's identity, as a pod of the root namespace has it: a token of its
	// ServiceAccount for istiod's audience, and the mesh root certificate.
	dir, err := os.MkdirTemp("", "aeraki-run-local-")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	ic, err := cp.IstiodClient(ctx, dir, controlplane.IstioNamespace, controlplane.AerakiServiceAccount)
	if err != nil {
		return err
	}
	say("aeraki connects to istiod at %s over TLS as %s/%s", ic.Addr, ic.Namespace, ic.ServiceAccount)
	srv, err := bootstrap.New(cp.RestConfig, bootstrap.Options{
		IstiodAddr:        ic.Addr,
		IstiodSecurity:    xds.Security{RootCertFile: ic.RootCertFile, ServerName: ic.ServerName, TokenFile: ic.TokenFile},
		RootNamespace:     controlplane.IstioNamespace,
		DomainSuffix:      "cluster.local",
		Debounce:          push.DebounceOptions{Quiet: 500 * time.Millisecond, Max: 10 * time.Second, Settle: push.DefaultSettle},
		XDSInitialBackoff: 500 * time.Millisecond,
		XDSMaxBackoff:     30 * time.Second,
		Manager: kube.Options{LeaderElection: true, LeaderElectionID: "aeraki-leader",
			LeaderElectionNamespace: controlplane.IstioNamespace, MetricsAddr: "127.0.0.1:8080", ProbeAddr: "127.0.0.1:8081",
			// Plain HTTP on loopback, for curl; a cluster serves them over HTTPS to authorized clients.
			InsecureMetrics: true},
		RouteServer: bootstrap.RouteServerOptions{Addr: routeServer, Host: "aeraki." + controlplane.IstioNamespace + ".svc.cluster.local",
			Port: 15080, TrustDomain: "cluster.local"},
		// As the controller's flags default: `aeraki status --addr http://127.0.0.1:8080` shows it.
		ProxyStatusInterval: bootstrap.DefaultProxyStatusInterval,
		ContainRejections:   true,
	}, log.WithName("aeraki"))
	if err != nil {
		return err
	}
	srvCtx, cancelSrv := context.WithCancel(ctx)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(srvCtx) }()
	defer func() {
		cancelSrv()
		if err := <-srvDone; err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	say("applying %s", sample)
	if err := kubectlRun(ctx, kubectl, cp.Kubeconfig, "apply", "-f", sample); err != nil {
		return err
	}
	var ls map[string]*listener.Listener
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ls, err = cp.SidecarListeners(ctx, "10.1.0.1", "dubbo", map[string]string{"app": "dubbo-consumer"})
		return err == nil && slices.Contains(controlplane.FilterNames(ls[listenerName]), "envoy.filters.network.dubbo_proxy"), nil
	})
	if err != nil {
		return fmt.Errorf("the sidecar listener %s never carried dubbo_proxy: %w", listenerName, err)
	}
	say("EnvoyFilters the controller wrote:")
	if err := kubectlRun(ctx, kubectl, cp.Kubeconfig, "get", "envoyfilters", "-A", "-l", "manager=aeraki", "-o", "yaml"); err != nil {
		return err
	}
	say("listener %s as istiod serves it to a sidecar:", listenerName)
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(ls[listenerName])
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	if err := showRoutes(ctx, cp, ls[listenerName]); err != nil {
		return err
	}
	say("running. Try: %s --kubeconfig %s get envoyfilters -A", kubectl, cp.Kubeconfig)
	say("metrics on http://127.0.0.1:8080/metrics, probes on http://127.0.0.1:8081/readyz. Ctrl-C stops everything.")
	<-ctx.Done()
	return nil
}

// showRoutes fetches the routes the listener's dubbo_proxy names from the route
// server, as the sidecar would, with a workload certificate of its own from istiod.
func showRoutes(ctx context.Context, cp *controlplane.ControlPlane, l *listener.Listener) error {
	var name string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			cfg := &dubbo.DubboProxy{}
			if f.GetTypedConfig().UnmarshalTo(cfg) == nil && cfg.GetDrds() != nil {
				name = cfg.GetDrds().GetRouteConfigName()
			}
		}
	}
	if name == "" {
		return fmt.Errorf("listener %s carries no dubbo_proxy that fetches its routes", l.GetName())
	}
	dir, err := os.MkdirTemp("", "aeraki-run-local-sidecar-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ic, err := cp.IstiodClient(ctx, dir, "dubbo", "dubbo-consumer")
	if err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rc, err := controlplane.DialRoutes(dialCtx, ic, routeServer, "spiffe://cluster.local/ns/"+controlplane.IstioNamespace+"/sa/"+controlplane.AerakiServiceAccount)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	resp, err := rc.Fetch(ctx, "sidecar~10.1.0.1~consumer.dubbo~dubbo.svc.cluster.local", dubboplugin.RoutesTypeURL, []string{name}, time.Minute)
	if err != nil {
		return err
	}
	say("routes %s as the route server serves them to that sidecar (version %s):", name, resp.GetVersionInfo())
	for _, r := range resp.GetResources() {
		m := &dubbo.MultipleRouteConfiguration{}
		if err := r.UnmarshalTo(m); err != nil {
			return err
		}
		out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Println(string(out))
	}
	return nil
}

func say(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

func kubectlRun(ctx context.Context, kubectl, kubeconfig string, args ...string) error {
	// The kubectl that make testbin built.
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...) //nolint:gosec
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %v: %w", args, err)
	}
	return nil
}
