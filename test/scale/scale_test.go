// Package scale measures the controller between a real kube-apiserver and a real
// istiod on loopback: N Dubbo services (a DestinationRule with two subsets and a
// VirtualService splitting 20/80 between them, then the ServiceEntries, each wave
// created at once), the time from each ServiceEntry's apply to its EnvoyFilters being
// visible, the apiserver's EnvoyFilter writes, the controller's peak memory, istiod's
// push time to one connected sidecar with our EnvoyFilters and without them, and next
// to them the floor: the same apiserver creating the same EnvoyFilters directly, one
// at a time and with as many writers as the controller has. What
// must hold is asserted (every service gets its EnvoyFilters with its routes, each
// written once, no valid service reported as failing, and a push with nothing to
// change writes nothing); times and memory are only reported.
//
// Run it with `make scale` (1,000 services); `make test` runs it with 200
// (AERAKI_SCALE_SERVICES overrides both). The same package measures the latency of one
// edit (edit_test.go) and soaks the controller in churn (soak_test.go).
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	clientalpha "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	// envServices overrides the number of services.
	envServices = "AERAKI_SCALE_SERVICES"
	// defaultServices is what `go test ./...` runs; `make scale` sets 1,000.
	defaultServices = 200
	// workers create the services.
	workers = 16
	// writers is the controller's --writers, passed explicitly, and the parallelism of
	// the floor it is compared with.
	writers   = bootstrap.DefaultWriters
	appNS     = "scale"
	rootNS    = controlplane.IstioNamespace
	dubboPort = 20880
	// The controller's debounce: short, as in the end-to-end tests.
	debounceQuiet = 100 * time.Millisecond
	debounceMax   = time.Second
	// settle is five times istiod's debounce (PILOT_DEBOUNCE_AFTER), as in test/e2e.
	settle  = 500 * time.Millisecond
	timeout = 60 * time.Second
	// perService is what a wait on istiod's pushes adds to timeout per service: it
	// pushes every service listener to the sidecar at once.
	perService = 10 * time.Millisecond
)

func TestMain(m *testing.M) {
	if os.Getenv(controlplane.EnvBinDir) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set: run `make scale` or `make test`\n", controlplane.EnvBinDir)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// result is what a run measured; the test logs it as a table and as one JSON line.
type result struct {
	Services        int            `json:"services"`
	EnvoyFilters    int            `json:"envoyfilters"`
	RoutingSeconds  float64        `json:"routing_create_seconds"`
	CreateSeconds   float64        `json:"serviceentry_create_seconds"`
	P50Seconds      float64        `json:"latency_p50_seconds"`
	P99Seconds      float64        `json:"latency_p99_seconds"`
	MaxSeconds      float64        `json:"latency_max_seconds"`
	AllVisibleSecs  float64        `json:"all_visible_seconds"`
	APIServerWrites map[string]int `json:"apiserver_envoyfilter_writes"`
	ControllerReqs  map[string]int `json:"controller_requests_by_method"`
	Pushes          map[string]int `json:"controller_pushes"`
	PeakRSSBytes    int64          `json:"controller_peak_rss_bytes"`
	ThrottledLines  int            `json:"controller_throttling_log_lines"`
	// GenerationFailures counts valid services that got a GenerationFailed Event.
	GenerationFailures int     `json:"generation_failed_services"`
	FloorSeqSecs       float64 `json:"floor_sequential_seconds"`
	FloorParSecs       float64 `json:"floor_parallel_seconds"`
	// FloorWorkers is the controller's --writers.
	FloorWorkers int `json:"floor_parallel_workers"`
	// P99OverFloor is the controller's p99 latency over the parallel floor: how far a
	// service's wait is from what the apiserver needs for all of them.
	P99OverFloor float64 `json:"latency_p99_over_floor_parallel"`
	// IstiodWith is istiod's pushes to one sidecar while the ServiceEntries are created
	// and the controller writes their EnvoyFilters; IstiodWithout the same
	// ServiceEntries created again once the controller and its EnvoyFilters are gone.
	IstiodWith    istiodPhase `json:"istiod_with_envoyfilters"`
	IstiodWithout istiodPhase `json:"istiod_without_envoyfilters"`
	// IstiodShared is the same ServiceEntries created again with the EnvoyFilters a
	// controller serving routes makes instead (one client filter for the port).
	IstiodShared istiodPhase `json:"istiod_with_shared_envoyfilters"`
}

func TestScale(t *testing.T) {
	n := serviceCount(t, defaultServices)
	begin := time.Now()
	res := result{Services: n, EnvoyFilters: 2 * n, FloorWorkers: writers}
	// A sidecar for istiod to push to, in the mesh until the floor.
	h := startHarness(t, n, true)
	cp, kube, istio, ae, sc := h.cp, h.kube, h.istio, h.ae, h.sc
	var err error

	obs := observe(t, istio)
	before := efWriteCount(t, cp)

	routing := createRouting(t, istio, n)
	istiodWith := startIstiod(t, cp, sc, "the ServiceEntries")
	applied, created := createServiceEntries(t, istio, n)
	res.RoutingSeconds, res.CreateSeconds = routing.Seconds(), created.Seconds()
	t.Logf("created %d DestinationRules and VirtualServices in %s, then %d ServiceEntries in %s",
		n, routing.Round(time.Millisecond), n, created.Round(time.Millisecond))

	waitVisible(t, ae, obs, n)
	latencies, last := obs.latencies(t, applied)
	res.P50Seconds = percentile(latencies, 50).Seconds()
	res.P99Seconds = percentile(latencies, 99).Seconds()
	res.MaxSeconds = slices.Max(latencies).Seconds()
	res.AllVisibleSecs = last.Sub(applied.first).Seconds()
	checkRouted(t, obs.firstVersions(), n, "as first written")
	sc.waitListeners(t, n, n)
	res.IstiodWith = istiodWith.end(t, cp, sc, "the EnvoyFilters")
	checkPushed(t, res.IstiodWith, "with the EnvoyFilters")

	wantWrites := map[string]int{"POST": 2 * n}
	checkIdlePush(t, cp, ae, istio, kube, before, wantWrites)
	if updates, deletes := obs.changes(); updates != 0 || deletes != 0 {
		t.Errorf("watched %d updates and %d deletes of EnvoyFilters, want none", updates, deletes)
	}
	checkRouted(t, obs.filters(), n, "once converged")
	failures := generationFailures(t, kube)
	res.GenerationFailures = len(failures)
	if len(failures) > 0 {
		t.Errorf("%d valid services got a GenerationFailed Event, e.g. %s", len(failures), failures[0])
	}

	// The controller's own view, its memory, then stop it before the floor.
	final := aerakiSamples(t, ae)
	writes := final.by("aeraki_envoyfilter_writes_total", "operation", nil)
	if int(writes["create"]) != 2*n || writes["update"] != 0 || writes["delete"] != 0 {
		t.Errorf("aeraki_envoyfilter_writes_total %v, want create %d, no update, no delete", writes, 2*n)
	}
	if errs := final.sum("aeraki_envoyfilter_write_errors_total", nil); errs != 0 {
		t.Errorf("aeraki_envoyfilter_write_errors_total = %v, want 0", errs)
	}
	res.Pushes = toInts(final.by("aeraki_pushes_total", "result", nil))
	res.ControllerReqs = toInts(final.by("rest_client_requests_total", "method", nil))
	if res.PeakRSSBytes, err = ae.PeakRSS(); err != nil {
		t.Error(err)
	}
	if err := ae.Stop(); err != nil {
		t.Errorf("aeraki: %v", err)
	}
	log, err := ae.Log()
	if err != nil {
		t.Error(err)
	}
	res.ThrottledLines = strings.Count(log, "client-side throttling")
	logPushes(t, log)
	// Whatever ran until the stop (the push of trigger B, a resync) wrote nothing either.
	res.APIServerWrites = controlplane.WritesSince(before, efWriteCount(t, cp))
	if !maps.Equal(res.APIServerWrites, wantWrites) {
		t.Errorf("apiserver EnvoyFilter writes when aeraki stopped: %v, want exactly %v", res.APIServerWrites, wantWrites)
	}

	specs := obs.filters()
	res.IstiodWithout = istiodBaseline(t, cp, sc, istio, n)
	checkPushed(t, res.IstiodWithout, "without EnvoyFilters")
	res.IstiodShared = istiodShared(t, cp, sc, istio, n)
	checkPushed(t, res.IstiodShared, "with the shared EnvoyFilters")
	sc.stop()

	// The floor: the same EnvoyFilters, without our label (so nothing of aeraki's
	// would touch them), created directly on the same apiserver.
	res.FloorSeqSecs = createFloor(t, istio, specs, "floor-seq-", 1).Seconds()
	res.FloorParSecs = createFloor(t, istio, specs, "floor-par-", writers).Seconds()
	res.P99OverFloor = res.P99Seconds / res.FloorParSecs

	report(t, res, time.Since(begin))
}

// harness is the control plane with the controller under test running on it as a
// child process, and the test's clients.
type harness struct {
	cp    *controlplane.ControlPlane
	kube  kubernetes.Interface
	istio istioclient.Interface
	ae    *controlplane.Aeraki
	sc    *sidecar // nil unless asked for
}

// startHarness starts the control plane and the controller built from cmd/aeraki
// (with controllerFlags and args), creates the services' namespace and, with
// withSidecar, connects a sidecar for a mesh of n services before the controller
// starts. It returns once the controller leads and has finished its first push: from
// there on every push is the test's. On failure the controller's first errors and
// the end of its log are logged.
func startHarness(t *testing.T, n int, withSidecar bool, args ...string) *harness {
	t.Helper()
	ctx := t.Context()
	built := controlplane.BuildAerakiForTest(t)
	h := &harness{cp: controlplane.StartForTest(t, controlplane.Options{Istiod: true})}
	bin := built()
	cfg := unthrottled(h.cp.RestConfig)
	h.kube = kubernetes.NewForConfigOrDie(cfg)
	h.istio = istioclient.NewForConfigOrDie(cfg)
	if _, err := h.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if withSidecar {
		h.sc = connectSidecar(t, h.cp, n)
	}
	var err error
	if h.ae, err = h.cp.StartAeraki(ctx, bin, slices.Concat(controllerFlags(), args)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndReport(t, h.ae) })
	t.Logf("aeraki pid %d, metrics %s, log %s", h.ae.PID(), h.ae.MetricsAddr, h.ae.LogPath)
	waitFor(t, "aeraki to lead and finish its first push", timeout, func(ctx context.Context) (bool, error) {
		if err := h.ae.Running(); err != nil {
			return false, err
		}
		m, err := aerakiMetrics(ctx, h.ae)
		if err != nil {
			return false, nil //nolint:nilerr // not answering yet is waiting, not failing
		}
		return m.sum("leader_election_master_status", nil) == 1 && m.sum("aeraki_pushes_total", nil) >= 1, nil
	})
	return h
}

// controllerFlags are the settings every test of the package runs the controller
// with, reported next to what it measures.
func controllerFlags() []string {
	return []string{
		"--debounce-quiet=" + debounceQuiet.String(), "--debounce-max=" + debounceMax.String(),
		"--settle=" + settle.String(), "--writers=" + strconv.Itoa(writers),
	}
}

// stopAndReport stops the controller and, if the test failed, logs its first errors
// and the end of its log.
func stopAndReport(t *testing.T, ae *controlplane.Aeraki) {
	t.Helper()
	if err := ae.Stop(); err != nil {
		t.Errorf("aeraki: %v", err)
	}
	if t.Failed() {
		if log, err := ae.Log(); err == nil {
			t.Logf("aeraki's first errors:\n%s\naeraki log (last 40 lines):\n%s", firstErrors(log, 10), tail(log, 40))
		}
	}
}

// checkIdlePush checks that a push after convergence, with nothing to change, writes
// nothing: the apiserver's EnvoyFilter writes since before are still exactly want.
// The trigger is a ServiceEntry the generator rejects (an interface annotation that
// names no interface): the Warning Event on it proves that a push translated it. Once trigger B's Event is
// out, the push that handled trigger A has finished (one push at a time), and it must
// have found nothing to write. It returns the writes since before.
func checkIdlePush(t *testing.T, cp *controlplane.ControlPlane, ae *controlplane.Aeraki, istio istioclient.Interface, kube kubernetes.Interface, before, want map[string]int) map[string]int {
	t.Helper()
	unchanged := map[string]string{"result": "unchanged"}
	unchangedBefore := aerakiSamples(t, ae).sum("aeraki_pushes_total", unchanged)
	triggerAndWaitEvent(t, istio, kube, "trigger-a", "240.241.0.1")
	triggerAndWaitEvent(t, istio, kube, "trigger-b", "240.241.0.2")
	unchangedAfter := aerakiSamples(t, ae).sum("aeraki_pushes_total", unchanged)
	got := controlplane.WritesSince(before, efWriteCount(t, cp))
	if !maps.Equal(got, want) {
		t.Errorf("apiserver EnvoyFilter writes once converged, after a push with nothing to change: %v, want exactly %v (one create per EnvoyFilter, no update, no delete)", got, want)
	}
	// Sidecar feedback looked at the proxies meanwhile (the sidecar here accepts
	// everything), and cost no write.
	status, err := ae.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, `"observedAt"`) || !strings.Contains(status, `"rejecting":0`) {
		t.Errorf("the controller did not look at the proxies, or saw a rejection: %s", firstBytes(status, 300))
	}
	if unchangedAfter <= unchangedBefore {
		t.Errorf("aeraki_pushes_total{result=unchanged} %v before the triggers, %v after: the push after an unrelated change should have found nothing to write", unchangedBefore, unchangedAfter)
	}
	return got
}

// maxServices is how many addresses vip has: 240.240.0.1 to 240.240.255.250.
const maxServices = 250 * 256

// serviceCount reads AERAKI_SCALE_SERVICES, def when unset.
func serviceCount(t *testing.T, def int) int {
	t.Helper()
	return envInt(t, envServices, def, maxServices)
}

// envInt reads the environment variable name as a number from 1 to most, def when
// unset.
func envInt(t *testing.T, name string, def, most int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		t.Fatalf("%s=%q: want a number from 1 to %d", name, v, most)
	}
	return n
}

// waitVisible waits until the informer has seen an outbound and an inbound
// EnvoyFilter of n services, logging progress. The timeout only bounds a hang: it
// would even hold a controller throttled to client-go's default of 5 requests a
// second (2 writes per service).
func waitVisible(t *testing.T, ae *controlplane.Aeraki, obs *observer, n int) {
	t.Helper()
	limit := 3*time.Minute + time.Duration(n)*400*time.Millisecond
	lastLog := time.Now()
	waitFor(t, "every service's EnvoyFilters", limit, func(context.Context) (bool, error) {
		out, in := obs.counts()
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("visible: %d/%d outbound, %d/%d inbound", out, n, in, n)
			lastLog = time.Now()
		}
		if err := ae.Running(); err != nil {
			return false, err
		}
		return out == n && in == n, obs.err()
	})
}

// unthrottled copies cfg without client-side rate limiting: the test's requests must
// measure the apiserver, not client-go's token bucket.
func unthrottled(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// service i: host, VIP and objects.
func host(i int) string { return fmt.Sprintf("svc-%05d.%s.example", i, appNS) }
func name(i int) string { return fmt.Sprintf("svc-%05d", i) }
func vip(i int) string  { return fmt.Sprintf("240.240.%d.%d", i/250, i%250+1) }

func serviceEntry(nm, h, addr string, annotations map[string]string) *clientnetworking.ServiceEntry {
	se := &clientnetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: nm, Namespace: appNS, Annotations: annotations}}
	se.Spec.Hosts = []string{h}
	se.Spec.Addresses = []string{addr}
	se.Spec.Ports = []*networking.ServicePort{{Number: dubboPort, Name: "tcp-dubbo", Protocol: "TCP"}}
	se.Spec.Resolution = networking.ServiceEntry_STATIC
	se.Spec.Location = networking.ServiceEntry_MESH_INTERNAL
	se.Spec.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{"app": nm}}
	return se
}

func destinationRule(i int) *clientnetworking.DestinationRule {
	dr := &clientnetworking.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: name(i), Namespace: appNS}}
	dr.Spec.Host = host(i)
	dr.Spec.Subsets = []*networking.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
	}
	return dr
}

// initialWeight is the percentage of each service's traffic its VirtualService first
// sends to subset v1; the rest goes to v2.
const initialWeight = 20

func virtualService(i int) *clientnetworking.VirtualService {
	vs := &clientnetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name(i), Namespace: appNS}}
	vs.Spec.Hosts = []string{host(i)}
	setWeights(&vs.Spec, host(i), initialWeight)
	return vs
}

// setWeights makes spec send v1 percent of host's traffic to subset v1, the rest to v2.
func setWeights(spec *networking.VirtualService, h string, v1 int) {
	spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
		{Destination: &networking.Destination{Host: h, Subset: "v1"}, Weight: int32(v1)},       //nolint:gosec // a percentage
		{Destination: &networking.Destination{Host: h, Subset: "v2"}, Weight: int32(100 - v1)}, //nolint:gosec // a percentage
	}}}
}

// applyTimes holds when each service was applied: when the create of its
// ServiceEntry returned.
type applyTimes struct {
	first time.Time // the first ServiceEntry create began
	at    []time.Time
}

// createRouting and createServiceEntries create n services "at once" with a pool of
// workers, in two waves: createRouting every DestinationRule and VirtualService, then
// createServiceEntries every ServiceEntry. A service exists for the controller from
// its ServiceEntry on; its routing objects are already known by then, so its first
// EnvoyFilters carry the routes and nothing needs an update.
// (Created service by service, a ServiceEntry can reach the controller before its
// VirtualService, or a VirtualService before its DestinationRule: istiod sends each
// kind in its own response, each listed when it is sent, in no fixed order. That
// costs an update, or a transient GenerationFailed Event, per service caught in
// between, which is why the routing objects go first.)
func createRouting(t *testing.T, istio istioclient.Interface, n int) time.Duration {
	t.Helper()
	ctx := t.Context()
	nw := istio.NetworkingV1()
	opts := metav1.CreateOptions{}
	begin := time.Now()
	err := inParallel(n, workers, func(i int) error {
		if _, err := nw.DestinationRules(appNS).Create(ctx, destinationRule(i), opts); err != nil {
			return fmt.Errorf("create DestinationRule %s: %w", name(i), err)
		}
		if _, err := nw.VirtualServices(appNS).Create(ctx, virtualService(i), opts); err != nil {
			return fmt.Errorf("create VirtualService %s: %w", name(i), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(begin)
}

// createServiceEntries creates the second wave, and returns when each was applied
// and how long the wave took.
func createServiceEntries(t *testing.T, istio istioclient.Interface, n int) (applyTimes, time.Duration) {
	t.Helper()
	ctx := t.Context()
	nw := istio.NetworkingV1()
	opts := metav1.CreateOptions{}
	times := applyTimes{first: time.Now(), at: make([]time.Time, n)}
	err := inParallel(n, workers, func(i int) error {
		se := serviceEntry(name(i), host(i), vip(i), map[string]string{"interface": fmt.Sprintf("org.example.Service%d", i)})
		if _, err := nw.ServiceEntries(appNS).Create(ctx, se, opts); err != nil {
			return fmt.Errorf("create ServiceEntry %s: %w", name(i), err)
		}
		times.at[i] = time.Now()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return times, time.Since(times.first)
}

// inParallel calls do for 0 to n-1 on the given number of goroutines and returns an
// error if any call failed.
func inParallel(n, workers int, do func(i int) error) error {
	next := make(chan int)
	var mu sync.Mutex
	var failed int
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(i); err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		return fmt.Errorf("%d of %d failed; the first: %w", failed, n, first)
	}
	return nil
}

// observer records when each EnvoyFilter labelled manager=aeraki is first seen, and
// each later version, from an informer of the test's own.
type observer struct {
	store toolscache.Store

	mu        sync.Mutex
	seen      map[string]time.Time                // namespace/name -> first seen
	first     map[string]*clientalpha.EnvoyFilter // namespace/name -> the version first seen
	service   map[string]string                   // namespace/name -> the aeraki.io/service annotation
	outbound  map[string]int                      // service -> EnvoyFilters in the root namespace
	inbound   map[string]int                      // service -> EnvoyFilters in the service's namespace
	latest    map[string]version                  // namespace/name -> the version seen last, while it exists
	updates   int
	deletes   int
	malformed error
}

// version is one version of an EnvoyFilter and when the informer saw it.
type version struct {
	ef *clientalpha.EnvoyFilter
	at time.Time
}

func observe(t *testing.T, istio istioclient.Interface) *observer {
	t.Helper()
	o := &observer{seen: map[string]time.Time{}, first: map[string]*clientalpha.EnvoyFilter{}, service: map[string]string{},
		outbound: map[string]int{}, inbound: map[string]int{}, latest: map[string]version{}}
	ours := labels.SelectorFromSet(labels.Set{model.ManagedByLabel: model.ManagedByValue}).String()
	factory := istioinformers.NewSharedInformerFactoryWithOptions(istio, 0,
		istioinformers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = ours }))
	inf := factory.Networking().V1alpha3().EnvoyFilters().Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.add(obj, time.Now()) },
		UpdateFunc: func(oldObj, newObj any) { o.update(oldObj, newObj, time.Now()) },
		DeleteFunc: o.delete,
	}); err != nil {
		t.Fatal(err)
	}
	o.store = inf.GetStore()
	stop := make(chan struct{})
	factory.Start(stop)
	t.Cleanup(func() {
		close(stop)
		factory.Shutdown()
	})
	for typ, ok := range factory.WaitForCacheSync(t.Context().Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	return o
}

func (o *observer) add(obj any, at time.Time) {
	ef := obj.(*clientalpha.EnvoyFilter)
	key := ef.Namespace + "/" + ef.Name
	svc := ef.Annotations[model.ServiceAnnotation]
	o.mu.Lock()
	defer o.mu.Unlock()
	o.latest[key] = version{ef: ef, at: at}
	if _, dup := o.seen[key]; dup {
		return
	}
	o.seen[key], o.first[key], o.service[key] = at, ef, svc
	switch {
	case svc == "":
		o.malformed = fmt.Errorf("EnvoyFilter %s has no %s annotation", key, model.ServiceAnnotation)
	case ef.Namespace == rootNS:
		o.outbound[svc]++
	case ef.Namespace == appNS:
		o.inbound[svc]++
	default:
		o.malformed = fmt.Errorf("EnvoyFilter %s in an unexpected namespace", key)
	}
}

// update counts a new version (not a resync's replay of the same) and keeps it.
func (o *observer) update(oldObj, newObj any, at time.Time) {
	ef := newObj.(*clientalpha.EnvoyFilter)
	if oldObj.(*clientalpha.EnvoyFilter).ResourceVersion == ef.ResourceVersion {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.updates++
	o.latest[ef.Namespace+"/"+ef.Name] = version{ef: ef, at: at}
}

func (o *observer) delete(obj any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deletes++
	if key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		delete(o.latest, key)
	}
}

// ofService returns the latest versions of the EnvoyFilters that exist for service
// (namespace/name of its ServiceEntry) in namespace, by namespace/name.
func (o *observer) ofService(service, namespace string) map[string]version {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]version{}
	for key, v := range o.latest {
		if v.ef.Namespace == namespace && v.ef.Annotations[model.ServiceAnnotation] == service {
			out[key] = v
		}
	}
	return out
}

// counts returns how many services have their outbound and inbound EnvoyFilter.
func (o *observer) counts() (out, in int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.outbound), len(o.inbound)
}

func (o *observer) err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.malformed
}

func (o *observer) changes() (updates, deletes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.updates, o.deletes
}

// latencies returns, per service, the time from its apply to both of its EnvoyFilters
// being seen, and when the last EnvoyFilter was seen. It fails the test unless every
// service has exactly one outbound and one inbound EnvoyFilter and there are no others.
func (o *observer) latencies(t *testing.T, applied applyTimes) ([]time.Duration, time.Time) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(applied.at)
	if len(o.seen) != 2*n {
		t.Fatalf("%d EnvoyFilters labelled %s=%s, want %d", len(o.seen), model.ManagedByLabel, model.ManagedByValue, 2*n)
	}
	visible := map[string]time.Time{}
	var last time.Time
	for key, at := range o.seen {
		svc := o.service[key]
		if at.After(visible[svc]) {
			visible[svc] = at
		}
		if at.After(last) {
			last = at
		}
	}
	out := make([]time.Duration, n)
	for i, at := range applied.at {
		svc := appNS + "/" + name(i)
		if o.outbound[svc] != 1 || o.inbound[svc] != 1 {
			t.Fatalf("service %s has %d outbound and %d inbound EnvoyFilters, want one of each", svc, o.outbound[svc], o.inbound[svc])
		}
		out[i] = visible[svc].Sub(at)
	}
	return out, last
}

// filters returns the EnvoyFilters the informer holds, sorted by namespace/name.
func (o *observer) filters() []*clientalpha.EnvoyFilter {
	var out []*clientalpha.EnvoyFilter
	for _, obj := range o.store.List() {
		out = append(out, obj.(*clientalpha.EnvoyFilter))
	}
	return sortFilters(out)
}

func sortFilters(efs []*clientalpha.EnvoyFilter) []*clientalpha.EnvoyFilter {
	slices.SortFunc(efs, func(a, b *clientalpha.EnvoyFilter) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return efs
}

// firstVersions returns the version of each EnvoyFilter first seen, sorted by
// namespace/name.
func (o *observer) firstVersions() []*clientalpha.EnvoyFilter {
	o.mu.Lock()
	defer o.mu.Unlock()
	return sortFilters(slices.Collect(maps.Values(o.first)))
}

// unrouted returns the outbound EnvoyFilters among efs (namespace/name) that do not
// put dubbo_proxy on the listener with the VirtualService's first routes, 20/80 to the
// DestinationRule's two subsets.
func unrouted(efs []*clientalpha.EnvoyFilter) ([]string, error) {
	var out []string
	for _, ef := range efs {
		if ef.Namespace != rootNS {
			continue
		}
		dp, err := envoyFilterDubbo(ef)
		if err != nil {
			return nil, err
		}
		h := strings.TrimPrefix(ef.Annotations[model.ServiceAnnotation], appNS+"/") + "." + appNS + ".example"
		if dp == nil || routeWeights(dp) != wantWeights(h, initialWeight) {
			out = append(out, ef.Namespace+"/"+ef.Name)
		}
	}
	return out, nil
}

// checkRouted fails the test if some outbound EnvoyFilters of efs lack the routes.
func checkRouted(t *testing.T, efs []*clientalpha.EnvoyFilter, n int, which string) {
	t.Helper()
	bad, err := unrouted(efs)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d of %d outbound EnvoyFilters lack the VirtualService's 20/80 routes to the DestinationRule's subsets, e.g. %s",
			which, len(bad), n, bad[0])
	}
}

// generationFailures returns the services of the harness (not the triggers) that got
// a GenerationFailed Event: each of them is valid, with its DestinationRule and
// VirtualService created before it.
func generationFailures(t *testing.T, kube kubernetes.Interface) []string {
	t.Helper()
	sel := fields.Set{"reason": "GenerationFailed"}.String()
	evs, err := kube.CoreV1().Events(appNS).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	byService := map[string]string{}
	for _, ev := range evs.Items {
		if nm := ev.InvolvedObject.Name; strings.HasPrefix(nm, "svc-") {
			byService[nm] = nm + ": " + ev.Message
		}
	}
	return slices.Sorted(maps.Values(byService))
}

// triggerAndWaitEvent creates a ServiceEntry with a Dubbo port and no interface
// annotation, which the generator rejects without writing anything, and waits for the
// controller's Warning Event on it.
func triggerAndWaitEvent(t *testing.T, istio istioclient.Interface, kube kubernetes.Interface, nm, addr string) {
	t.Helper()
	se := serviceEntry(nm, nm+"."+appNS+".example", addr, map[string]string{"interface": "not an interface"})
	if _, err := istio.NetworkingV1().ServiceEntries(appNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sel := fields.Set{"involvedObject.name": nm, "reason": "GenerationFailed"}.String()
	waitFor(t, "the GenerationFailed Event on ServiceEntry "+nm, timeout, func(ctx context.Context) (bool, error) {
		evs, err := kube.CoreV1().Events(appNS).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, err
		}
		return len(evs.Items) > 0, nil
	})
}

// createFloor creates a copy of every EnvoyFilter (spec only, renamed, without our
// label) with the given number of workers, and returns how long it took.
func createFloor(t *testing.T, istio istioclient.Interface, efs []*clientalpha.EnvoyFilter, prefix string, workers int) time.Duration {
	t.Helper()
	ctx := t.Context()
	objs := make([]*clientalpha.EnvoyFilter, len(efs))
	for i, ef := range efs {
		obj := &clientalpha.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: prefix + ef.Name, Namespace: ef.Namespace}}
		proto.Merge(&obj.Spec, &ef.Spec)
		objs[i] = obj
	}
	begin := time.Now()
	err := inParallel(len(objs), workers, func(i int) error {
		_, err := istio.NetworkingV1alpha3().EnvoyFilters(objs[i].Namespace).Create(ctx, objs[i], metav1.CreateOptions{})
		return err
	})
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("floor: creating EnvoyFilters: %v", err)
	}
	t.Logf("floor: %d EnvoyFilters created directly by %d worker(s) in %s", len(objs), workers, took.Round(time.Millisecond))
	return took
}

// efWriteCount is the apiserver's count of EnvoyFilter writes so far, by verb.
func efWriteCount(t *testing.T, cp *controlplane.ControlPlane) map[string]int {
	t.Helper()
	n, err := cp.EnvoyFilterWrites(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func aerakiMetrics(ctx context.Context, ae *controlplane.Aeraki) (samples, error) {
	text, err := ae.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	return parseMetrics(text)
}

func aerakiSamples(t *testing.T, ae *controlplane.Aeraki) samples {
	t.Helper()
	ss, err := aerakiMetrics(t.Context(), ae)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// waitFor polls cond every 100ms until it holds; an error from cond or the timeout
// fails the test.
func waitFor(t *testing.T, what string, limit time.Duration, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, limit, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// percentile is the nearest-rank percentile p of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// canonicalJSON is m as compact JSON with sorted keys (protojson's output is
// deliberately unstable).
func canonicalJSON(m proto.Message) (string, error) {
	js, err := protojson.Marshal(m)
	if err != nil {
		return "", err
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return "", err
	}
	out, err := json.Marshal(v)
	return string(out), err
}

func toInts(m map[string]float64) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = int(v)
	}
	return out
}

// logPushes logs the controller's log lines about pushes that wrote something: how
// many services and EnvoyFilters each saw and how long it took.
func logPushes(t *testing.T, log string) {
	t.Helper()
	var pushes []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, `"msg":"push"`) {
			pushes = append(pushes, strings.TrimSpace(line))
		}
	}
	t.Logf("aeraki's pushes that wrote:\n%s", strings.Join(pushes, "\n"))
}

// firstErrors returns the first n error lines of the controller's JSON log.
func firstErrors(log string, n int) string {
	var out []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, `"level":"error"`) && len(out) < n {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(len(all)-lines, 0):], "\n")
}

// report logs the results as a table and as one JSON line for tools.
func report(t *testing.T, r result, took time.Duration) {
	t.Helper()
	sec := func(s float64) string {
		return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
	}
	perEF := func(s float64) string {
		return (time.Duration(s * float64(time.Second) / float64(r.EnvoyFilters))).Round(time.Microsecond).String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "scale: %d services, %d EnvoyFilters; aeraki %s\n", r.Services, r.EnvoyFilters, strings.Join(controllerFlags(), " "))
	row := func(k, v string) { fmt.Fprintf(&b, "  %-52s %s\n", k, v) }
	row(fmt.Sprintf("DestinationRules and VirtualServices (%d workers)", workers), sec(r.RoutingSeconds))
	row(fmt.Sprintf("ServiceEntries (%d workers)", workers), sec(r.CreateSeconds))
	row("apply -> EnvoyFilters visible, p50", sec(r.P50Seconds))
	row("apply -> EnvoyFilters visible, p99", sec(r.P99Seconds))
	row("apply -> EnvoyFilters visible, max", sec(r.MaxSeconds))
	row("first ServiceEntry -> all EnvoyFilters visible", sec(r.AllVisibleSecs))
	row("apiserver EnvoyFilter writes (by verb)", fmt.Sprint(r.APIServerWrites))
	row("controller requests since its start (by method)", fmt.Sprint(r.ControllerReqs))
	row("controller pushes (by result)", fmt.Sprint(r.Pushes))
	row("controller peak RSS (VmHWM)", fmt.Sprintf("%.1f MiB", float64(r.PeakRSSBytes)/(1<<20)))
	row("controller log lines on client-side throttling", strconv.Itoa(r.ThrottledLines))
	row("valid services with a GenerationFailed Event", strconv.Itoa(r.GenerationFailures))
	istiodRows := func(which string, p istiodPhase) {
		row("istiod -> sidecar, "+which, fmt.Sprintf("%s to the sidecar's final listeners; received %v", sec(p.Seconds), p.Received))
		for _, typ := range slices.Sorted(maps.Keys(p.PushTime)) {
			row("  pilot_xds_push_time "+typ, formatPushTime(p.PushTime[typ]))
		}
	}
	istiodRows("ServiceEntries and our EnvoyFilters", r.IstiodWith)
	istiodRows("the same ServiceEntries, no EnvoyFilters", r.IstiodWithout)
	istiodRows("the same ServiceEntries, shared EnvoyFilters", r.IstiodShared)
	row("floor: direct creates, sequential", fmt.Sprintf("%s (%s per EnvoyFilter)", sec(r.FloorSeqSecs), perEF(r.FloorSeqSecs)))
	row(fmt.Sprintf("floor: direct creates, %d workers (--writers)", r.FloorWorkers), fmt.Sprintf("%s (%s per EnvoyFilter)", sec(r.FloorParSecs), perEF(r.FloorParSecs)))
	row("apply -> visible p99 / floor with --writers", fmt.Sprintf("%.2f", r.P99OverFloor))
	row("test run time", took.Round(time.Second).String())
	t.Log(b.String())
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scale-result %s", js)
}

func firstBytes(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
