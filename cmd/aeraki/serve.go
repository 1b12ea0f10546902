package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/plugin/kafka"
)

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("aeraki", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bootstrap.Options
	istiodFlags(fs, &o)
	fs.StringVar(&o.RootNamespace, "root-namespace", "istio-system", "Istio's root namespace, where outbound EnvoyFilters go")
	fs.StringVar(&o.DomainSuffix, "domain-suffix", "cluster.local", "the cluster's DNS domain, for short hosts")
	fs.DurationVar(&o.Debounce.Quiet, "debounce-quiet", 500*time.Millisecond, "push after this long without a config change")
	fs.DurationVar(&o.Debounce.Max, "debounce-max", 10*time.Second, "push at the latest this long after the first unpushed change")
	fs.DurationVar(&o.Debounce.Settle, "settle", push.DefaultSettle,
		"push only after istiod's config has been still this long (longer than istiod's PILOT_DEBOUNCE_AFTER), so objects applied together are pushed together")
	fs.DurationVar(&o.Resync, "resync", 10*time.Minute, "push at least this often, repairing any drift (0 disables)")
	fs.DurationVar(&o.SecretPoll, "secret-poll", bootstrap.DefaultSecretPoll, "read the Secrets Redis objects name again this often (no Secret is watched)")
	fs.DurationVar(&o.ProxyStatusInterval, "proxy-status-interval", bootstrap.DefaultProxyStatusInterval,
		"ask istiod this often which proxies reject what our EnvoyFilters shaped, to report it (0 turns it off)")
	fs.BoolVar(&o.ContainRejections, "contain-rejections", true,
		"while proxies reject a service's EnvoyFilters, write the last ones they accepted (or none) until its config changes")
	fs.IntVar(&o.Writers, "writers", bootstrap.DefaultWriters, "EnvoyFilter writes that run at once")
	fs.DurationVar(&o.XDSInitialBackoff, "xds-initial-backoff", 500*time.Millisecond, "first wait before reconnecting to istiod")
	fs.DurationVar(&o.XDSMaxBackoff, "xds-max-backoff", 30*time.Second, "longest wait between reconnects to istiod")
	fs.BoolVar(&o.Manager.LeaderElection, "leader-elect", true, "elect a leader among replicas; only the leader writes")
	fs.StringVar(&o.Manager.LeaderElectionID, "leader-election-id", "aeraki-leader", "name of the leader election Lease")
	fs.StringVar(&o.Manager.LeaderElectionNamespace, "leader-election-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease (default: $POD_NAMESPACE, or the in-cluster namespace)")
	metricsFlags(fs, &o.Manager)
	fs.StringVar(&o.Manager.ProbeAddr, "probe-addr", ":8081", "/healthz and /readyz address (0 disables)")
	fs.StringVar(&o.Manager.PprofAddr, "pprof-addr", "0", "Go's /debug/pprof profiles, for example 127.0.0.1:6060 (0 disables; they are not authenticated)")
	fs.BoolVar(&o.Plugins.KafkaContribFilter, kafka.ContribFlag, false, kafkaFlagHelp)
	routeServerFlags(fs, &o.RouteServer)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	level := uberzap.NewAtomicLevelAt(zapcore.InfoLevel)
	fs.TextVar(&level, "log-level", level, "log level: debug, info or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aeraki: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return 2
	}
	if o.Manager.InsecureMetrics && o.Manager.MetricsCertDir != "" {
		fmt.Fprintf(stderr, "aeraki: --metrics-cert-dir needs --metrics-secure\n")
		return 2
	}
	if o.Debounce.Max < 2*o.Debounce.Settle {
		// The ceiling pushes whatever came; close to the settle, it would cut the
		// settle short while istiod is slow to send what was applied together.
		fmt.Fprintf(stderr, "aeraki: --debounce-max (%s) must be at least twice --settle (%s)\n", o.Debounce.Max, o.Debounce.Settle)
		return 2
	}
	if o.RouteServer.Host == "" {
		o.RouteServer.Host = defaultRouteServerHost(o)
	}
	// Errors carry their context in fields; stack traces are for panics only.
	log := zap.New(zap.Level(level), zap.WriteTo(stderr), zap.StacktraceLevel(zapcore.DPanicLevel))
	ctrl.SetLogger(log)
	if limit, ok := memoryLimit(os.Getenv("GOMEMLIMIT"), os.Getenv("MEMORY_LIMIT")); ok {
		debug.SetMemoryLimit(limit)
		log.V(1).Info("soft memory limit", "bytes", limit)
	}

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		log.Error(err, "cannot load the Kubernetes client config")
		return 1
	}
	srv, err := bootstrap.New(cfg, o, log)
	if err != nil {
		log.Error(err, "cannot start")
		return 1
	}
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), log)
	if err := srv.Run(ctx); err != nil {
		log.Error(err, "stopped with an error")
		return 1
	}
	return 0
}

// istiodFlags are the flags of the connection to istiod: TLS verified against the mesh
// root and the pod's token, as istio-agent connects sidecars, unless plaintext.
func istiodFlags(fs *flag.FlagSet, o *bootstrap.Options) {
	sec := &o.IstiodSecurity
	fs.StringVar(&o.IstiodAddr, "istiod-addr", defaultIstiodAddr,
		"istiod's secure xDS address (host:port); with --istiod-plaintext its plaintext port, 15010")
	fs.StringVar(&sec.RootCertFile, "istiod-root-cert", xds.DefaultRootCertFile,
		"the mesh root certificate istiod's certificate must chain to (key root-cert.pem of the ConfigMap istio-ca-root-cert); "+
			"read on every connection")
	fs.StringVar(&sec.TokenFile, "istiod-token", xds.DefaultTokenFile,
		"a projected ServiceAccount token with audience istio-ca, sent to istiod as a bearer token; read on every connection")
	fs.StringVar(&sec.ServerName, "istiod-server-name", "",
		"the name istiod's certificate must carry; empty means the host of --istiod-addr")
	fs.StringVar(&o.IstiodVersion, "istiod-version", "",
		"the istiod version the EnvoyFilters are for, as istiod reports it (1.30.3); empty reads it from istiod, "+
			"an unknown one being taken for the newest")
	fs.BoolVar(&sec.Plaintext, "istiod-plaintext", false,
		"connect without TLS or identity, to an istiod running with ENABLE_XDS_API_GENERATOR_AUTH=false: local development only")
}

// metricsFlags are the flags of the metrics server: HTTPS for clients the apiserver
// authenticates and authorizes, unless turned off for a local run.
func metricsFlags(fs *flag.FlagSet, mo *kube.Options) {
	fs.StringVar(&mo.MetricsAddr, "metrics-addr", ":8443", "Prometheus metrics address (0 disables)")
	fs.BoolFunc("metrics-secure", "serve metrics over HTTPS to clients whose bearer token the apiserver accepts and "+
		"who may get the non-resource URL /metrics (false: plain HTTP to anyone, for local runs only) (default true)", func(v string) error {
		secure, err := strconv.ParseBool(v)
		mo.InsecureMetrics = !secure
		return err
	})
	fs.StringVar(&mo.MetricsCertDir, "metrics-cert-dir", "", "directory with the metrics server's "+kube.MetricsCertFile+" and "+
		kube.MetricsKeyFile+", reloaded when they change (default: a self-signed certificate)")
}

// memoryLimit is the Go runtime's soft memory limit for a container limit of
// containerLimit bytes (the Deployment's MEMORY_LIMIT): 90% of it, leaving room for
// what is not heap (stacks, the runtime's own, buffers). GOMEMLIMIT, when set, wins.
func memoryLimit(gomemlimit, containerLimit string) (int64, bool) {
	if gomemlimit != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(containerLimit, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n / 10 * 9, true
}

// routeServerFlags are the flags of the route server that sidecars fetch the routes
// of shared ports from.
func routeServerFlags(fs *flag.FlagSet, ro *bootstrap.RouteServerOptions) {
	fs.StringVar(&ro.Addr, "route-server-addr", ":15080",
		"where to serve the routes of shared ports to sidecars (mTLS with the mesh's certificates); empty turns shared ports off, "+
			"and every service port gets listener patches of its own")
	fs.StringVar(&ro.Host, "route-server-host", "", "the host sidecars dial for routes: the controller's Service "+
		"(default aeraki.<$POD_NAMESPACE or --root-namespace>.svc.<--domain-suffix>)")
	ro.Port = defaultRouteServerPort
	fs.Func("route-server-port", fmt.Sprintf("the port sidecars dial for routes, on --route-server-host (default %d)", defaultRouteServerPort), func(v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("not a port: %q", v)
		}
		ro.Port = uint32(n)
		return nil
	})
	fs.StringVar(&ro.TrustDomain, "trust-domain", "cluster.local", "the mesh's trust domain (meshConfig.trustDomain): "+
		"sidecars check the route server's certificate against it")
}

// defaultRouteServerPort is the route server's port on the controller's Service.
const defaultRouteServerPort = 15080

// defaultRouteServerHost is the controller's Service in its namespace.
func defaultRouteServerHost(o bootstrap.Options) string {
	ns := cmp.Or(os.Getenv("POD_NAMESPACE"), o.RootNamespace)
	return "aeraki." + ns + ".svc." + o.DomainSuffix
}

// defaultIstiodAddr is istiod's secure xDS port in the default root namespace.
const defaultIstiodAddr = "istiod.istio-system.svc:15012"

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	// As ctrl.GetConfig does: no client-side rate limit (client-go's default of 5 writes
	// a second would make a push of a thousand EnvoyFilters take minutes); the
	// apiserver's priority and fairness limits us instead.
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	return cfg, nil
}
