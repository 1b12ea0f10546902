package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"istio.io/istio/tests/util/leak"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/test/controlplane"
)

// apiserver is a kube-apiserver (envtest) with our CRDs and Istio's, started by the
// first test that needs it, so the unit tests of this package run without one.
var apiserver controlplane.Envtest

// logs collects what the managers log, to prove that no secret reaches a log.
var logs syncBuffer

func TestMain(m *testing.M) {
	ctrllog.SetLogger(funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") },
		funcr.Options{Verbosity: 5}))
	os.Exit(apiserver.Run(m))
}

// adminClient talks to the apiserver directly, as a user would.
func adminClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testNamespace creates a namespace for one test and deletes the Redis objects and
// Secrets in it when the test ends (envtest has no namespace controller).
func testNamespace(t *testing.T, c client.Client, name string) string {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err) // -count=N reuses the namespace, emptied by the last run
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs (last lines):\n%s", lastLines(logs.String(), 100))
		}
		for _, obj := range []client.Object{&v1alpha1.RedisService{}, &v1alpha1.RedisDestination{}, &corev1.Secret{}} {
			if err := c.DeleteAllOf(ctx, obj, client.InNamespace(name)); err != nil {
				t.Errorf("cleaning up %T: %v", obj, err)
			}
		}
	})
	return name
}

// idleConnections leaves out of the leak check the read loops of HTTP/2 connections
// that a stopped manager's clients keep open until their idle timeout.
var idleConnections = leak.WithExcludedLeaks([]string{"http2.(*ClientConn).readLoop"})

// waitFor polls cond until it returns nil, and fails the test with cond's last error
// after the deadline.
func waitFor(t *testing.T, what string, cond func(ctx context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %v)", what, err, last)
	}
}

// translation is a fake translation: the test decides the verdict and counts the
// calls.
type translation struct {
	name     string
	triggers atomic.Int64
	mu       sync.Mutex
	verdict  func(client.Object) model.Verdict
	checks   map[string]int
}

func newTranslation(name string, verdict func(client.Object) model.Verdict) *translation {
	return &translation{name: name, verdict: verdict, checks: map[string]int{}}
}

func (tr *translation) Trigger() { tr.triggers.Add(1) }

func (tr *translation) Verdict(obj client.Object) model.Verdict {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.checks[objKey(obj)]++
	return tr.verdict(obj)
}

// checked returns how often obj was checked.
func (tr *translation) checked(obj client.Object) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.checks[objKey(obj)]
}

func (tr *translation) totalChecks() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.checks {
		n += c
	}
	return n
}

func objKey(obj client.Object) string {
	return fmt.Sprintf("%T/%s/%s", obj, obj.GetNamespace(), obj.GetName())
}

// recorded is one Event as the reconciler asked for it.
type recorded struct {
	object, eventType, reason, note string
}

// countingRecorder records what the reconciler emits and passes it to the manager's
// recorder, which writes it to the apiserver.
type countingRecorder struct {
	next   events.EventRecorder
	mu     sync.Mutex
	events []recorded
}

func (r *countingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	obj, _ := regarding.(client.Object)
	r.mu.Lock()
	r.events = append(r.events, recorded{object: objKey(obj), eventType: eventtype, reason: reason, note: fmt.Sprintf(note, args...)})
	r.mu.Unlock()
	r.next.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// of returns the Events emitted for obj.
func (r *countingRecorder) of(obj client.Object) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, e := range r.events {
		if e.object == objKey(obj) {
			out = append(out, e)
		}
	}
	return out
}

// statusWrites counts the requests that write the status of a Redis object, on every
// transport of one manager.
type statusWrites struct {
	count atomic.Int64
}

func (w *statusWrites) wrap(rt http.RoundTripper) http.RoundTripper {
	return countingTransport{next: rt, w: w}
}

type countingTransport struct {
	next http.RoundTripper
	w    *statusWrites
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet && strings.HasSuffix(r.URL.Path, "/status") && strings.Contains(r.URL.Path, "/redis.aeraki.io/") {
		c.w.count.Add(1)
	}
	return c.next.RoundTrip(r)
}

// instance is one controller process: a manager with the Redis reconcilers.
type instance struct {
	name     string
	mgr      manager.Manager
	tr       *translation
	recorder *countingRecorder
	writes   *statusWrites
	recheck  func()
	cancel   context.CancelFunc
	done     chan error
}

// startInstance builds a manager with opts and the reconcilers and starts it; the test's
// end stops it.
func startInstance(t *testing.T, name string, opts Options, tr *translation) *instance {
	t.Helper()
	writes := &statusWrites{}
	cfg := apiserver.RestConfig(t)
	cfg.Wrap(writes.wrap)
	opts.MetricsAddr = "0"
	opts.SeveralManagersPerProcess = true
	mgr, err := NewManager(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, mgr: mgr, tr: tr, writes: writes, done: make(chan error, 1)}
	in.recorder = &countingRecorder{next: mgr.GetEventRecorder(EventRecorderName)}
	in.recheck, err = setupRedis(mgr, RedisOptions{Trigger: tr.Trigger, Verdict: tr.Verdict}, in.recorder)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop stops the manager and waits for it (and its lease release) to end.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager %s: %v", in.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("manager %s did not stop", in.name)
	}
}

// elected reports whether the instance leads.
func (in *instance) elected() bool {
	select {
	case <-in.mgr.Elected():
		return true
	default:
		return false
	}
}

// settle returns once a reconcile of obj has run from start to end after the call.
// The reconcilers have one worker, so the second recheck's Verdict call for obj
// comes after the whole first reconcile.
func (in *instance) settle(t *testing.T, obj client.Object) {
	t.Helper()
	for range 2 {
		n := in.tr.checked(obj)
		in.recheck()
		waitFor(t, "a recheck of "+objKey(obj), func(context.Context) error {
			if in.tr.checked(obj) <= n {
				return errors.New("not checked again yet")
			}
			return nil
		})
	}
}

// readyCondition reads obj from the apiserver and returns its Ready condition and
// status.observedGeneration.
func readyCondition(ctx context.Context, c client.Client, obj client.Object) (*metav1.Condition, int64, error) {
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return nil, 0, err
	}
	var st v1alpha1.Status
	switch o := obj.(type) {
	case *v1alpha1.RedisService:
		st = o.Status
	case *v1alpha1.RedisDestination:
		st = o.Status
	default:
		return nil, 0, fmt.Errorf("%T is not a Redis object", obj)
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type == v1alpha1.ConditionReady {
			return &st.Conditions[i], st.ObservedGeneration, nil
		}
	}
	return nil, st.ObservedGeneration, errors.New("no Ready condition")
}

// waitCondition waits until obj's Ready condition has status, reason and message and
// both observed generations equal metadata.generation.
func waitCondition(t *testing.T, c client.Client, obj client.Object, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s %s/%s/%q", objKey(obj), status, reason, message), func(ctx context.Context) error {
		cond, observed, err := readyCondition(ctx, c, obj)
		if err != nil {
			return err
		}
		gen := obj.GetGeneration()
		if cond.Status != status || cond.Reason != reason || cond.Message != message || cond.ObservedGeneration != gen || observed != gen {
			return fmt.Errorf("condition %+v, status.observedGeneration %d, generation %d", *cond, observed, gen)
		}
		return nil
	})
}

// apiEvents lists the events.k8s.io Events about obj.
func apiEvents(ctx context.Context, c client.Client, obj client.Object) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.UID == obj.GetUID() {
			out = append(out, e)
		}
	}
	return out, nil
}

// waitAPIEvent waits until the apiserver holds exactly one Event about obj with this
// type and reason, emitted once (no series).
func waitAPIEvent(t *testing.T, c client.Client, obj client.Object, eventType, reason string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	waitFor(t, fmt.Sprintf("a %s Event %s on %s", eventType, reason, objKey(obj)), func(ctx context.Context) error {
		evs, err := apiEvents(ctx, c, obj)
		if err != nil {
			return err
		}
		var match []eventsv1.Event
		for _, e := range evs {
			if e.Type == eventType && e.Reason == reason {
				match = append(match, e)
			}
		}
		if len(match) != 1 || match[0].Series != nil {
			return fmt.Errorf("%d matching Events: %+v", len(match), match)
		}
		found = match[0]
		return nil
	})
	return found
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
