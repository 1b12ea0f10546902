package push

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/metrics/metricstest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/plugin"
)

// metricsHarness is a controller whose Applier writes to a fake client (no cache lag:
// every push sees the previous one's writes), with its metrics on a fresh registry.
type metricsHarness struct {
	t          *testing.T
	reg        *prometheus.Registry
	source     *source
	ctrl       *Controller
	kube       client.Client
	failUpdate atomic.Bool
}

func newMetricsHarness(t *testing.T, debounce DebounceOptions) *metricsHarness {
	t.Helper()
	h := &metricsHarness{t: t, reg: prometheus.NewRegistry(), source: &source{}}
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	h.kube = fake.NewClientBuilder().WithScheme(scheme).WithIndex(&clientnetworking.EnvoyFilter{}, apply.OwnerIndex, apply.IndexOwner).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if h.failUpdate.Load() {
				return apierrors.NewBadRequest("rejected by the test")
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	m, err := metrics.NewMetrics(h.reg, metrics.XDS{})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = NewController(ControllerOptions{
		Context:  generator.Context{RootNamespace: "istio-system"},
		Registry: plugin.Registry(plugin.Options{}),
		Debounce: debounce,
		Source:   h.source,
		Applier: &apply.Applier{Cache: h.kube, Client: h.kube, Live: h.kube, MaxElapsed: time.Second,
			Metrics: m, Log: testr.New(t)},
		Metrics: m,
		Log:     testr.New(t),
	})
	return h
}

// expect compares the named metrics with the exposition text want (HELP and TYPE
// lines left out: they are added from the registry).
func (h *metricsHarness) expect(want string, names ...string) {
	h.t.Helper()
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(metricstest.WithMetadata(h.t, h.reg, want)), names...); err != nil {
		h.t.Error(err)
	}
}

func (h *metricsHarness) ours() int {
	h.t.Helper()
	list := &clientnetworking.EnvoyFilterList{}
	if err := h.kube.List(h.t.Context(), list, client.MatchingLabels{model.ManagedByLabel: model.ManagedByValue}); err != nil {
		h.t.Fatal(err)
	}
	return len(list.Items)
}

const conflictingEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a2, namespace: dubbo, annotations: {interface: org.example.A}}
spec:
  hosts: [a.dubbo.example]
  addresses: [240.0.0.9]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: a2}}`

func TestPushMetrics(t *testing.T) {
	h := newMetricsHarness(t, DebounceOptions{})
	ctx := t.Context()
	pushes := func(result string) float64 {
		return metricstest.Value(t, h.reg, "aeraki_pushes_total", "result", result)
	}
	genErrors := func(reason string) float64 {
		return metricstest.Value(t, h.reg, "aeraki_generation_errors_total", "protocol", "dubbo", "reason", reason)
	}

	t.Log("one good, one failing and one headless service (its outbound side left as TCP)")
	good, bad, headless := fixture.DubboEntry("a", "org.example.A", "240.0.0.1"), fixture.DubboEntry("b", "not an interface", "240.0.0.2"), fixture.DubboEntry("h", "org.example.H", "")
	h.source.setYAML(t, good, bad, headless)
	if err := h.ctrl.Push(ctx); err != nil {
		t.Fatal(err)
	}
	created := h.ours()
	if created == 0 {
		t.Fatal("the push created nothing")
	}
	generation := `
		aeraki_services{protocol="dubbo"} 2
		aeraki_services{protocol="kafka"} 0
		aeraki_services{protocol="redis"} 0
		aeraki_services{protocol="thrift"} 0
		aeraki_services{protocol="zookeeper"} 0
		aeraki_generation_failures{protocol="dubbo"} 1
		aeraki_generation_failures{protocol="kafka"} 0
		aeraki_generation_failures{protocol="redis"} 0
		aeraki_generation_failures{protocol="thrift"} 0
		aeraki_generation_failures{protocol="zookeeper"} 0
		aeraki_ports_left_tcp{protocol="dubbo"} 1
		aeraki_ports_left_tcp{protocol="kafka"} 0
		aeraki_ports_left_tcp{protocol="redis"} 0
		aeraki_ports_left_tcp{protocol="thrift"} 0
		aeraki_ports_left_tcp{protocol="zookeeper"} 0
	`
	h.expect(generation, "aeraki_services", "aeraki_generation_failures", "aeraki_ports_left_tcp")
	if got := genErrors(metrics.ReasonInvalid); got != 1 {
		t.Errorf("generation errors = %v, want 1", got)
	}
	h.expect(`
		aeraki_pushes_total{result="changed"} 1
		aeraki_pushes_total{result="error"} 0
		aeraki_pushes_total{result="unchanged"} 0
		aeraki_envoyfilter_writes_total{operation="create"} `+strconv.Itoa(created)+`
		aeraki_envoyfilter_writes_total{operation="delete"} 0
		aeraki_envoyfilter_writes_total{operation="update"} 0
	`, "aeraki_pushes_total", "aeraki_envoyfilter_writes_total")
	if n := testutil.CollectAndCount(h.reg, "aeraki_push_duration_seconds", "aeraki_translate_duration_seconds"); n != 2 {
		t.Errorf("%d duration histograms, want 2", n)
	}

	t.Log("the same push again: unchanged, the failure is not counted again")
	if err := h.ctrl.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if pushes(metrics.PushUnchanged) != 1 || pushes(metrics.PushChanged) != 1 {
		t.Errorf("pushes changed %v unchanged %v, want 1 and 1", pushes(metrics.PushChanged), pushes(metrics.PushUnchanged))
	}
	h.expect(generation, "aeraki_services", "aeraki_generation_failures", "aeraki_ports_left_tcp")
	if got := genErrors(metrics.ReasonInvalid); got != 1 {
		t.Errorf("generation errors after a second push = %v, want still 1", got)
	}

	t.Log("a name conflict is counted as such")
	h.source.setYAML(t, good, bad, headless, conflictingEntry)
	if err := h.ctrl.Push(ctx); err != nil {
		t.Fatal(err)
	}
	if got := genErrors(metrics.ReasonConflict); got != 1 {
		t.Errorf("conflict errors = %v, want 1", got)
	}
	if got := metricstest.Value(t, h.reg, "aeraki_generation_failures", "protocol", "dubbo"); got != 2 {
		t.Errorf("failing dubbo services = %v, want 2", got)
	}

	t.Log("an update the apiserver rejects is a write error and a failed push")
	h.failUpdate.Store(true)
	h.source.setYAML(t, fixture.DubboEntry("a", "org.example.A2", "240.0.0.1"), headless)
	if err := h.ctrl.Push(ctx); err == nil {
		t.Fatal("push with rejected updates: no error")
	}
	h.failUpdate.Store(false)
	if got := pushes(metrics.PushError); got != 1 {
		t.Errorf("failed pushes = %v, want 1", got)
	}
	writeErrs := metricstest.Value(t, h.reg, "aeraki_envoyfilter_write_errors_total", "operation", metrics.OpUpdate)
	if writeErrs != 1 { // a's outbound: its server side accepts every interface either way
		t.Errorf("update errors = %v, want 1", writeErrs)
	}

	t.Log("everything goes away: the gauges read 0, the deletes are counted")
	h.source.setYAML(t)
	if err := h.ctrl.Push(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"aeraki_services", "aeraki_generation_failures", "aeraki_ports_left_tcp"} {
		for _, p := range model.Protocols {
			if got := metricstest.Value(t, h.reg, name, "protocol", string(p)); got != 0 {
				t.Errorf("%s{protocol=%q} = %v, want 0", name, p, got)
			}
		}
	}
	if got := metricstest.Value(t, h.reg, "aeraki_envoyfilter_writes_total", "operation", metrics.OpDelete); got != float64(created) {
		t.Errorf("deletes = %v, want %d", got, created)
	}
}

func TestPushMetricsCountMergedTriggers(t *testing.T) {
	h := newMetricsHarness(t, DebounceOptions{Quiet: 10 * time.Millisecond, Max: 50 * time.Millisecond})
	h.source.setYAML(t, fixture.DubboEntry("a", "org.example.A", "240.0.0.1"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.ctrl.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	pushed := func() float64 {
		return metricstest.Value(t, h.reg, "aeraki_pushes_total", "result", metrics.PushChanged) +
			metricstest.Value(t, h.reg, "aeraki_pushes_total", "result", metrics.PushUnchanged)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return pushed() >= 1, nil
	}); err != nil {
		t.Fatal("no push")
	}
	if got := metricstest.Value(t, h.reg, "aeraki_push_triggers_merged_total"); got < 1 {
		t.Errorf("merged triggers = %v, want at least the first push's", got)
	}
}
