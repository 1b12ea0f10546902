// Package apiserver_test drives the push loop, the apply step and their metrics
// against a real kube-apiserver and etcd (envtest).
package apiserver_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/metrics"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/plan"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/test/controlplane"
)

// apiserver is a real kube-apiserver and etcd (envtest) with Istio's CRDs and ours,
// started by the first test that needs it.
var apiserver controlplane.Envtest

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // the tests log through testr
	os.Exit(apiserver.Run(m))
}

// writeCounter counts the requests that change something.
type writeCounter struct {
	next   http.RoundTripper
	writes atomic.Int64
}

func (w *writeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.writes.Add(1)
	}
	return w.next.RoundTrip(r)
}

// staticSource serves a snapshot read from YAML that the test swaps.
type staticSource struct {
	mu   sync.Mutex
	snap *model.Snapshot
	// changed says the snapshot was swapped since it was read; delta is what
	// changed in it since, when told.
	changed bool
	delta   model.Delta
}

func (s *staticSource) HasSynced() bool { return true }

func (s *staticSource) Snapshot() (*model.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed = false
	return s.snap, nil
}

// Changes returns what changed, or says to translate the whole config when it was
// swapped.
func (s *staticSource) Changes() (model.Delta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.delta
	d.Whole = d.Whole || s.changed
	s.changed, s.delta = false, model.Delta{}
	return d, nil
}

// swap serves another snapshot.
func (s *staticSource) swap(snap *model.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap, s.changed = snap, true
}

// change changes the snapshot and tells what changed.
func (s *staticSource) change(change func(*model.Snapshot) model.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delta.Objects = append(s.delta.Objects, change(s.snap))
}

func (s *staticSource) set(t *testing.T, docs ...string) {
	t.Helper()
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(strings.Join(docs, "\n---\n")), "test"); len(errs) > 0 {
		t.Fatal(errs)
	}
	s.swap(objs.Snapshot("cluster.local"))
}

type harness struct {
	t       *testing.T
	ctx     context.Context
	counter *writeCounter
	applier *apply.Applier
	ctrl    *push.Controller
	source  *staticSource
	admin   client.Client
	events  *events.FakeRecorder
	metrics *prometheus.Registry
}

func newHarness(t *testing.T) *harness {
	ctx := t.Context()
	counter := &writeCounter{}
	cfg := apiserver.RestConfig(t)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&clientnetworking.EnvoyFilter{}: {Label: labels.SelectorFromSet(model.ManagedLabels())},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// As the controller does: the pushes plan what the cache saw change.
	var ctrl atomic.Pointer[push.Controller]
	if err := apply.WatchCluster(ctx, c, func(key string) {
		if p := ctrl.Load(); p != nil {
			p.ClusterChanged(key)
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	writer, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(apiserver.RestConfig(t), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"istio-system", "dubbo", fixture.Namespace} {
		err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, ctx: ctx, counter: counter, source: &staticSource{}, admin: admin, events: events.NewFakeRecorder(10),
		metrics: prometheus.NewRegistry()}
	m, err := metrics.NewMetrics(h.metrics, metrics.XDS{})
	if err != nil {
		t.Fatal(err)
	}
	h.applier = &apply.Applier{Cache: c, Client: writer, Live: writer, MaxElapsed: 5 * time.Second, Workers: 4, CacheWait: 10 * time.Second, Metrics: m, Log: testr.New(t)}
	h.ctrl = push.NewController(push.ControllerOptions{
		Context:  generator.Context{RootNamespace: "istio-system"},
		Registry: plugin.Registry(plugin.Options{}),
		Source:   h.source,
		Applier:  h.applier,
		Recorder: h.events,
		Metrics:  m,
		Log:      testr.New(t),
	})
	ctrl.Store(h.ctrl)
	return h
}

// push runs one push and returns the number of write requests it made.
func (h *harness) push() (int64, error) {
	h.t.Helper()
	before := h.counter.writes.Load()
	err := h.ctrl.Push(h.ctx)
	return h.counter.writes.Load() - before, err
}

// waitCache waits until the cache holds exactly the named EnvoyFilters of ours.
func (h *harness) waitCache(names ...string) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := h.applier.Current(ctx)
		if err != nil || len(cur) != len(names) {
			return false, err
		}
		for _, n := range names {
			if cur[n] == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		cur, _ := h.applier.Current(h.ctx)
		h.t.Fatalf("cache never held %v; it holds %d: %v", names, len(cur), keys(cur))
	}
}

// drainEvents returns the Events recorded since the last call.
func (h *harness) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// waitFor waits until the cache satisfies ok.
func (h *harness) waitFor(ok func(map[string]*model.EnvoyFilter) bool) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := h.applier.Current(ctx)
		return err == nil && ok(cur), err
	})
	if err != nil {
		h.t.Fatalf("cache never reached the expected state: %v", err)
	}
}

func keys(m map[string]*model.EnvoyFilter) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// get reads an EnvoyFilter of the root namespace from the apiserver.
func (h *harness) get(name string) *clientnetworking.EnvoyFilter {
	h.t.Helper()
	obj := &clientnetworking.EnvoyFilter{}
	if err := h.admin.Get(h.ctx, client.ObjectKey{Namespace: "istio-system", Name: name}, obj); err != nil {
		h.t.Fatal(err)
	}
	return obj
}

const (
	outA = "istio-system/aeraki-outbound-a.dubbo.example-20880"
	inA  = "dubbo/aeraki-inbound-a.dubbo.example-20880"
	outB = "istio-system/aeraki-outbound-b.dubbo.example-20880"
	inB  = "dubbo/aeraki-inbound-b.dubbo.example-20880"
)

func TestApplyLifecycle(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx

	// Someone else's EnvoyFilter, without our label: never touched.
	user := &clientnetworking.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: "user-filter", Namespace: "istio-system"}}
	user.Spec.Priority = 7
	if err := h.admin.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	userRV := h.get("user-filter").ResourceVersion
	// Another controller's, labelled `manager: aeraki` alone (as upstream Aeraki's
	// might be during a switch): never touched either, not even by the delete push.
	other := &clientnetworking.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: "aeraki-other", Namespace: "istio-system",
		Labels: map[string]string{model.ManagedByLabel: model.ManagedByValue}}}
	if err := h.admin.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	otherRV := h.get("aeraki-other").ResourceVersion

	t.Log("create")
	h.source.set(t, fixture.DubboEntry("a", "org.example.A", "240.0.0.1"), fixture.DubboEntry("b", "org.example.B", "240.0.0.2"))
	if n, err := h.push(); err != nil || n != 4 {
		t.Fatalf("first push: %d writes, err %v; want 4 creates", n, err)
	}
	h.waitCache(outA, inA, outB, inB)

	t.Log("a push that changes nothing writes nothing")
	if n, err := h.push(); err != nil || n != 0 {
		t.Fatalf("unchanged push: %d writes, err %v; want 0", n, err)
	}

	t.Log("update")
	h.source.set(t, fixture.DubboEntry("a", "org.example.A2", "240.0.0.1"), fixture.DubboEntry("b", "org.example.B", "240.0.0.2"))
	if n, err := h.push(); err != nil || n != 1 {
		t.Fatalf("update push: %d writes, err %v; want 1 (the outbound of a: its inbound accepts every interface either way)", n, err)
	}
	if !strings.Contains(specJSON(t, h.get("aeraki-outbound-a.dubbo.example-20880")), "org.example.A2") {
		t.Fatal("outbound EnvoyFilter of a does not carry the new interface")
	}
	waitUpToDate(h, 0)

	t.Log("a hand edit is taken back, labels others added stay")
	edited := h.get("aeraki-outbound-a.dubbo.example-20880")
	edited.Spec.Priority = 42
	edited.Labels["team"] = "payments"
	if err := h.admin.Update(ctx, edited); err != nil {
		t.Fatal(err)
	}
	h.waitFor(func(cur map[string]*model.EnvoyFilter) bool { return cur[outA].Spec.GetPriority() == 42 })
	waitUpToDate(h, 1)
	restored := h.get("aeraki-outbound-a.dubbo.example-20880")
	if restored.Spec.Priority != 0 || restored.Labels["team"] != "payments" {
		t.Fatalf("after restore: priority %d, labels %v", restored.Spec.Priority, restored.Labels)
	}

	t.Log("a service that fails keeps its EnvoyFilters")
	h.source.set(t, fixture.DubboEntry("a", "org.example.A2", "240.0.0.1"), fixture.DubboEntry("b", "not an interface", "240.0.0.2"))
	if n, err := h.push(); err != nil || n != 0 {
		t.Fatalf("push with b broken: %d writes, err %v; want 0", n, err)
	}
	h.waitCache(outA, inA, outB, inB)
	if got := h.drainEvents(); len(got) != 1 || !strings.HasPrefix(got[0], "Warning GenerationFailed port 20880 (dubbo): annotation \"interface\": \"not an interface\" is not a Dubbo interface") {
		t.Fatalf("events = %q, want one Warning telling what to fix", got)
	}
	if _, err := h.push(); err != nil {
		t.Fatal(err)
	}
	if got := h.drainEvents(); len(got) != 0 {
		t.Fatalf("the same failure was reported again: %q", got)
	}

	t.Log("delete")
	h.source.set(t)
	if n, err := h.push(); err != nil || n != 4 {
		t.Fatalf("delete push: %d writes, err %v; want 4 deletes", n, err)
	}
	h.waitCache()

	t.Log("a name taken by an EnvoyFilter that is not ours is reported, not taken over")
	squatter := &clientnetworking.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: "aeraki-outbound-c.dubbo.example-20880", Namespace: "istio-system"}}
	squatter.Spec.Priority = 3
	if err := h.admin.Create(ctx, squatter); err != nil {
		t.Fatal(err)
	}
	squatterRV := h.get(squatter.Name).ResourceVersion
	h.source.set(t, fixture.DubboEntry("c", "org.example.C", "240.0.0.3"))
	_, err := h.push()
	if err == nil || !strings.Contains(err.Error(), "without our label") || !errors.Is(err, apply.ErrNotRetriable) {
		t.Fatalf("push onto a foreign name: err %v; want it reported, as not retriable", err)
	}
	if rv := h.get(squatter.Name).ResourceVersion; rv != squatterRV {
		t.Fatal("the foreign EnvoyFilter was modified")
	}
	if rv := h.get("aeraki-other").ResourceVersion; rv != otherRV {
		t.Error("another controller's EnvoyFilter labelled manager: aeraki was modified")
	}
	if rv := h.get("user-filter").ResourceVersion; rv != userRV {
		t.Fatal("the unlabelled EnvoyFilter was modified")
	}

	t.Log("a service exported to a namespace that does not exist is reported, not retried")
	if err := h.admin.Delete(ctx, squatter); err != nil {
		t.Fatal(err)
	}
	h.source.set(t, fixture.DubboEntry("c", "org.example.C", "240.0.0.3")+"\n  exportTo: [dubbo, nowhere]")
	_, err = h.push()
	if err == nil || !strings.Contains(err.Error(), "nowhere/aeraki-outbound-c.dubbo.example-20880") ||
		!strings.Contains(err.Error(), "namespace does not exist") || !errors.Is(err, apply.ErrNotRetriable) {
		t.Fatalf("push into a missing namespace: err %v; want it named, as not retriable", err)
	}
	h.waitCache("dubbo/aeraki-outbound-c.dubbo.example-20880", "dubbo/aeraki-inbound-c.dubbo.example-20880")
}

// waitUpToDate pushes until the cache has caught up with the last writes, and
// checks the total number of writes that took.
func waitUpToDate(h *harness, wantWrites int64) {
	h.t.Helper()
	var total int64
	err := wait.PollUntilContextTimeout(h.ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		n, err := h.push()
		total += n
		return err == nil && n == 0, err
	})
	if err != nil {
		h.t.Fatalf("pushes did not settle: %v", err)
	}
	if total != wantWrites {
		h.t.Fatalf("%d writes before settling, want %d", total, wantWrites)
	}
}

func specJSON(t *testing.T, obj *clientnetworking.EnvoyFilter) string {
	t.Helper()
	b, err := obj.Spec.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A delete carries the plan's resource version and UID: an EnvoyFilter edited, or
// deleted and created again, since the plan saw it is not deleted.
func TestDeleteOnlyWhatThePlanSaw(t *testing.T) {
	h := newHarness(t)
	obj := &clientnetworking.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: "aeraki-outbound-stale-20880", Namespace: "istio-system",
		Labels: model.ManagedLabels()}}
	if err := h.admin.Create(h.ctx, obj); err != nil {
		t.Fatal(err)
	}
	h.waitFor(func(m map[string]*model.EnvoyFilter) bool {
		return m["istio-system/aeraki-outbound-stale-20880"] != nil
	})
	cur, err := h.applier.Current(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := cur["istio-system/aeraki-outbound-stale-20880"]
	// Someone edits it after the plan saw it.
	edited := h.get("aeraki-outbound-stale-20880")
	edited.Spec.Priority = 7
	if err := h.admin.Update(h.ctx, edited); err != nil {
		t.Fatal(err)
	}
	if _, err := h.applier.Apply(h.ctx, plan.Changes{Delete: []*model.EnvoyFilter{seen}}); err == nil {
		t.Error("deleting the version the plan saw, after an edit: no error")
	}
	if got := h.get("aeraki-outbound-stale-20880"); got == nil || got.Spec.Priority != 7 {
		t.Fatalf("the edited EnvoyFilter was deleted: %v", got)
	}
	// Once planned again from the current version, it goes.
	h.waitFor(func(m map[string]*model.EnvoyFilter) bool {
		c := m["istio-system/aeraki-outbound-stale-20880"]
		return c != nil && c.Spec.GetPriority() == 7
	})
	cur, err = h.applier.Current(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.applier.Apply(h.ctx, plan.Changes{Delete: []*model.EnvoyFilter{cur["istio-system/aeraki-outbound-stale-20880"]}}); err != nil {
		t.Fatal(err)
	}
}
