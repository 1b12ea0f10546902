package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// The tests in this file break something under the running controller (istiod, the
// apiserver, the leader, its EnvoyFilters, a write) and check that it converges again.

// TestIstiodRestart stops istiod, creates one service and deletes another while it is
// down, and starts it again: the controller reconnects and, from the full state istiod
// sends, creates the new service's EnvoyFilters and deletes the removed one's. The
// untouched service's EnvoyFilters are never deleted or rewritten meanwhile. It runs on
// the secure path: the reconnect authenticates again.
func TestIstiodRestart(t *testing.T) {
	e := startSecure(t)
	kept := dubboService{name: "kept", host: "kept.dubbo.example", vip: "240.240.0.21"}
	removed := dubboService{name: "removed", host: "removed.dubbo.example", vip: "240.240.0.22"}
	added := dubboService{name: "added", host: "added.dubbo.example", vip: "240.240.0.23"}
	e.createDubbo(t, kept)
	e.createDubbo(t, removed)
	e.waitDubboFilters(t, kept, true)
	e.waitDubboFilters(t, removed, true)
	before := e.versions(t, kept.filters()...)

	if err := e.cp.StopIstiod(); err != nil {
		t.Fatal(err)
	}
	e.createDubbo(t, added)
	e.deleteDubbo(t, removed)
	if err := e.cp.StartIstiod(t.Context()); err != nil {
		t.Fatal(err)
	}

	e.waitDubboFilters(t, added, true)
	e.waitDubboFilters(t, removed, false)
	e.waitListenerFilter(t, added.vip+"_20880", dubboFilter)
	e.checkUnchanged(t, before)
}

// TestAPIServerOutage stops the apiserver while the controller is about to delete an
// EnvoyFilter (istiod told it the service is gone; the test holds that delete until the
// apiserver is down, so it fails for real), starts it again on the same address and
// changes something at once: the controller, which must not exit, makes the pending
// delete and the new change, and keeps working afterwards.
func TestAPIServerOutage(t *testing.T) {
	e := startControlPlane(t)
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	rec := &recorder{beforeWrite: func(req *http.Request, w apiRequest) {
		if w.resource != "envoyfilters" || w.method != http.MethodDelete || !hold.CompareAndSwap(true, false) {
			return
		}
		close(held)
		select {
		case <-release:
		case <-req.Context().Done():
		}
	}}
	opts := e.options()
	// A leader that cannot renew its lease for RenewDeadline gives it up, and
	// controller-runtime's manager then exits (so that the pod restarts). The outage
	// here lasts a few seconds; keep it well within the deadline on a busy machine.
	opts.Manager.LeaseDuration, opts.Manager.RenewDeadline = time.Minute, 45*time.Second
	r := e.runController(t, "controller", rec.config(e.cp.RestConfig), opts)

	kept := dubboService{name: "kept", host: "kept.dubbo.example", vip: "240.240.0.31"}
	pending := dubboService{name: "pending", host: "pending.dubbo.example", vip: "240.240.0.32"}
	e.createDubbo(t, kept)
	e.createDubbo(t, pending)
	e.waitDubboFilters(t, kept, true)
	e.waitDubboFilters(t, pending, true)
	before := e.versions(t, kept.filters()...)

	hold.Store(true)
	e.deleteDubbo(t, pending)
	select {
	case <-held:
	case <-time.After(timeout):
		t.Fatalf("the controller never tried to delete the EnvoyFilters of %s", pending.name)
	}
	down := time.Now()
	if err := e.cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	close(release)
	failedWrite := func(w apiRequest) bool { return w.resource == "envoyfilters" && w.status == 0 }
	waitUntil(t, "a write of an EnvoyFilter failing on the stopped apiserver", func() bool { return rec.count(failedWrite) > 0 })
	if err := e.cp.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver down for %s; EnvoyFilter writes failed meanwhile: %d", time.Since(down).Round(time.Millisecond), rec.count(failedWrite))
	added := dubboService{name: "added", host: "added.dubbo.example", vip: "240.240.0.33"}
	e.createDubbo(t, added)

	e.waitDubboFilters(t, pending, false)
	e.waitDubboFilters(t, added, true)
	e.checkUnchanged(t, before)

	// Still working: a new service, a deleted one.
	later := dubboService{name: "later", host: "later.dubbo.example", vip: "240.240.0.34"}
	e.createDubbo(t, later)
	e.deleteDubbo(t, added)
	e.waitDubboFilters(t, later, true)
	e.waitDubboFilters(t, added, false)
	if !r.running() {
		t.Fatalf("the controller exited: %v", r.err)
	}
}

// TestLeaderFailover runs two replicas with leader election: only the leader writes
// EnvoyFilters (every request of each replica is recorded); when the leader goes, the
// other takes the lease and converges on changes made after, without rewriting what
// the old leader wrote. The leader goes in two ways: stopped (it releases the lease),
// and cut off from the apiserver as a killed process would be (it releases nothing:
// the other waits for the lease to expire, and the cut-off one exits on its own).
func TestLeaderFailover(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		leaderFailover(t, func(t *testing.T, r *replica, _ *recorder) {
			if err := r.stop(); err != nil {
				t.Fatalf("the leader's Run: %v", err)
			}
		})
	})
	t.Run("cut off", func(t *testing.T) {
		leaderFailover(t, func(t *testing.T, r *replica, rec *recorder) {
			rec.cutOff.Store(true)
			waitUntil(t, "the cut-off leader to exit", func() bool { return !r.running() })
			if err := r.stop(); err == nil || !strings.Contains(err.Error(), "leader election lost") {
				t.Fatalf("the cut-off leader's Run returned %v, want leader election lost", err)
			}
			r.err = nil // checked here; the test's cleanup expects a clean stop
		})
	})
}

func leaderFailover(t *testing.T, leave func(*testing.T, *replica, *recorder)) {
	e := startControlPlane(t)
	opts := e.options()
	opts.Manager.LeaderElectionID = "aeraki-e2e-failover"
	// Failover needs no lease expiry (a stopping leader releases the lease); these
	// bound a lost leader and are long enough for a busy machine to renew in time.
	opts.Manager.LeaseDuration, opts.Manager.RenewDeadline, opts.Manager.RetryPeriod = 10*time.Second, 8*time.Second, 250*time.Millisecond
	recs := []*recorder{{}, {}}
	replicas := []*replica{
		e.runController(t, "a", recs[0].config(e.cp.RestConfig), opts),
		e.runController(t, "b", recs[1].config(e.cp.RestConfig), opts),
	}
	tookLease := func(w apiRequest) bool { return w.resource == "leases" && w.succeeded() }
	envoyFilterWrite := func(w apiRequest) bool { return w.resource == "envoyfilters" }
	leader := -1
	waitUntil(t, "a replica taking the lease", func() bool {
		for i, rec := range recs {
			if rec.count(tookLease) > 0 {
				leader = i
				return true
			}
		}
		return false
	})
	follower := 1 - leader
	t.Logf("leader: %s", replicas[leader].name)

	first := dubboService{name: "first", host: "first.dubbo.example", vip: "240.240.0.41"}
	second := dubboService{name: "second", host: "second.dubbo.example", vip: "240.240.0.42"}
	e.createDubbo(t, first)
	e.waitDubboFilters(t, first, true)
	// Both replicas got the first service from istiod at the same time; by the time the
	// second converges, a follower that pushes would have written the first.
	e.createDubbo(t, second)
	e.waitDubboFilters(t, second, true)
	if n := recs[leader].count(envoyFilterWrite); n < 4 {
		t.Errorf("the leader made %d EnvoyFilter writes, want at least the 4 creates", n)
	}
	if ws := recs[follower].list(envoyFilterWrite); len(ws) > 0 {
		t.Fatalf("the follower wrote EnvoyFilters: %v", ws)
	}
	if ws := recs[follower].list(tookLease); len(ws) > 0 {
		t.Fatalf("both replicas wrote the lease; the follower: %v", ws)
	}

	untouched := e.versions(t, second.filters()...)
	leave(t, replicas[leader], recs[leader])
	// Its "stopped leading" Event may still be posted after Run returned.
	notEvent := func(w apiRequest) bool { return w.resource != "events" }
	stoppedWrites := recs[leader].count(notEvent)
	third := dubboService{name: "third", host: "third.dubbo.example", vip: "240.240.0.43"}
	e.createDubbo(t, third)
	e.deleteDubbo(t, first)
	e.waitDubboFilters(t, third, true)
	e.waitDubboFilters(t, first, false)
	e.checkUnchanged(t, untouched) // taken over without a rewrite

	if recs[follower].count(tookLease) == 0 {
		t.Error("the follower converged without taking the lease")
	}
	if n := recs[follower].count(func(w apiRequest) bool { return envoyFilterWrite(w) && w.succeeded() }); n < 4 {
		t.Errorf("the new leader made %d EnvoyFilter writes, want at least 2 creates and 2 deletes", n)
	}
	if ws := recs[leader].list(notEvent); len(ws) != stoppedWrites {
		t.Errorf("the stopped leader wrote %d more times: %v", len(ws)-stoppedWrites, ws[stoppedWrites:])
	}
}

// TestHandEditedEnvoyFilterRestored changes one of our EnvoyFilters by hand and
// deletes another: the controller puts back what it generates. Periodic resync is off
// (see options), so the restoring push comes from the controller's watch on its
// EnvoyFilters.
func TestHandEditedEnvoyFilterRestored(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	d := dubboService{name: "restored", host: "restored.dubbo.example", vip: "240.240.0.51"}
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)
	out, in := d.filters()[0], d.filters()[1]
	wantOut := e.envoyFilterYAML(t, out.Namespace, out.Name)
	wantIn := e.envoyFilterYAML(t, in.Namespace, in.Name)

	efs := e.istio.NetworkingV1alpha3().EnvoyFilters(out.Namespace)
	ef, err := efs.Get(ctx, out.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ef.Spec.Priority = 42
	ef.Spec.ConfigPatches[0].Patch.Operation = networkingv1alpha3.EnvoyFilter_Patch_REMOVE
	edited, err := efs.Update(ctx, ef, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if specYAML(t, edited) == wantOut {
		t.Fatal("the hand edit changed nothing")
	}
	e.waitSpec(t, out, wantOut, func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool {
		return ef.ResourceVersion != edited.ResourceVersion
	})

	inbound, err := e.istio.NetworkingV1alpha3().EnvoyFilters(in.Namespace).Get(ctx, in.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.istio.NetworkingV1alpha3().EnvoyFilters(in.Namespace).Delete(ctx, in.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSpec(t, in, wantIn, func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool { return ef.UID != inbound.UID })
}

// TestUnlabelledEnvoyFilterUntouched puts two EnvoyFilters without our label in the
// root namespace, one of them under the very name the controller generates for a
// service, and makes the controller push several times (create, update and delete of
// services): neither is ever written, and the taken name is not taken over.
func TestUnlabelledEnvoyFilterUntouched(t *testing.T) {
	e := startControlPlane(t)
	rec := &recorder{}
	e.runController(t, "controller", rec.config(e.cp.RestConfig), e.options())
	ctx := t.Context()

	taken := dubboService{name: "taken", host: "taken.dubbo.example", vip: "240.240.0.61"}
	userFilters := []*clientnetworkingv1alpha3.EnvoyFilter{
		userEnvoyFilter("hand-written", map[string]string{"team": "mesh"}),
		userEnvoyFilter(taken.outbound().Name, nil),
	}
	var keys []types.NamespacedName
	for _, ef := range userFilters {
		if _, err := e.istio.NetworkingV1alpha3().EnvoyFilters(rootNS).Create(ctx, ef, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, types.NamespacedName{Namespace: rootNS, Name: ef.Name})
	}
	before := e.versions(t, keys...)
	wantSpecs := map[types.NamespacedName]string{}
	for _, key := range keys {
		wantSpecs[key] = e.envoyFilterYAML(t, key.Namespace, key.Name)
	}

	// Pushes: a service whose outbound name is taken (its inbound filter still comes),
	// another created, updated and deleted, then the first deleted.
	e.createDubbo(t, taken)
	inbound := taken.filters()[1]
	e.waitEnvoyFilter(t, inbound.Namespace, inbound.Name, true)
	other := dubboService{name: "other", host: "other.dubbo.example", vip: "240.240.0.62"}
	e.createDubbo(t, other)
	e.waitDubboFilters(t, other, true)
	e.addAddress(t, other, "240.240.0.63")
	e.waitSpec(t, other.outbound(), "", func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool {
		return strings.Contains(specYAML(t, ef), "240.240.0.63")
	})
	e.deleteDubbo(t, other)
	e.waitDubboFilters(t, other, false)
	e.deleteDubbo(t, taken)
	e.waitEnvoyFilter(t, inbound.Namespace, inbound.Name, false)

	e.checkUnchanged(t, before)
	for _, key := range keys {
		if got := e.envoyFilterYAML(t, key.Namespace, key.Name); got != wantSpecs[key] {
			t.Errorf("EnvoyFilter %s changed:\n%s", key, got)
		}
		if ws := rec.list(func(w apiRequest) bool {
			return w.resource == "envoyfilters" && w.namespace == key.Namespace && w.name == key.Name
		}); len(ws) > 0 {
			t.Errorf("the controller wrote EnvoyFilter %s: %v", key, ws)
		}
	}
	if n := rec.count(func(w apiRequest) bool { return w.resource == "envoyfilters" && w.succeeded() }); n < 5 {
		t.Errorf("%d EnvoyFilter writes succeeded; the pushes above make at least 5", n)
	}
}

// TestWriteConflictRetried makes the controller's update of an EnvoyFilter meet a real
// conflict: just before its PUT reaches the apiserver another client updates the same
// object, so the controller's resourceVersion is stale and the apiserver answers 409. The
// controller retries, and the object ends up with the spec the controller wanted.
func TestWriteConflictRetried(t *testing.T) {
	e := startControlPlane(t)
	d := dubboService{name: "contended", host: "contended.dubbo.example", vip: "240.240.0.71"}
	key := d.outbound()
	var armed atomic.Bool
	type interference struct {
		desired *clientnetworkingv1alpha3.EnvoyFilter // what the controller's PUT carried
		err     error
	}
	interfered := make(chan interference, 1)
	rec := &recorder{beforeWrite: func(req *http.Request, w apiRequest) {
		if w.method != http.MethodPut || w.resource != "envoyfilters" || w.namespace != key.Namespace || w.name != key.Name ||
			!armed.CompareAndSwap(true, false) {
			return
		}
		desired, err := requestEnvoyFilter(req)
		if err == nil {
			err = e.interfere(req.Context(), key)
		}
		interfered <- interference{desired: desired, err: err}
	}}
	e.runController(t, "controller", rec.config(e.cp.RestConfig), e.options())
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)

	armed.Store(true)
	e.addAddress(t, d, "240.240.0.72")
	var got interference
	select {
	case got = <-interfered:
	case <-time.After(timeout):
		t.Fatal("the controller never updated the outbound EnvoyFilter")
	}
	if got.err != nil {
		t.Fatalf("interfering with the controller's update: %v", got.err)
	}
	want := &got.desired.Spec
	if !strings.Contains(specYAML(t, got.desired), "240.240.0.72") {
		t.Fatalf("the intercepted update does not carry the new address:\n%s", specYAML(t, got.desired))
	}

	isPut := func(w apiRequest) bool {
		return w.method == http.MethodPut && w.resource == "envoyfilters" && w.namespace == key.Namespace && w.name == key.Name
	}
	waitUntil(t, "a successful PUT after the conflict", func() bool {
		puts := rec.list(isPut)
		i := slices.IndexFunc(puts, func(w apiRequest) bool { return w.status == http.StatusConflict })
		return i >= 0 && slices.ContainsFunc(puts[i+1:], apiRequest.succeeded)
	})
	if n := rec.count(func(w apiRequest) bool { return isPut(w) && w.status == http.StatusConflict }); n != 1 {
		t.Errorf("%d updates met a conflict, want 1 (the provoked one)", n)
	}
	var diff string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ef, err := e.istio.NetworkingV1alpha3().EnvoyFilters(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		diff = cmp.Diff(want, &ef.Spec, protocmp.Transform())
		return diff == "", nil
	})
	if err != nil {
		t.Fatalf("EnvoyFilter %s never got the controller's spec (-want +got):\n%s", key, diff)
	}
}

// interfere updates the EnvoyFilter as another writer would, between the controller's
// read and its write.
func (e *env) interfere(ctx context.Context, key types.NamespacedName) error {
	efs := e.istio.NetworkingV1alpha3().EnvoyFilters(key.Namespace)
	ef, err := efs.Get(ctx, key.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	ef.Spec.Priority = 7
	_, err = efs.Update(ctx, ef, metav1.UpdateOptions{})
	return err
}

// requestEnvoyFilter decodes the EnvoyFilter a write request carries.
func requestEnvoyFilter(req *http.Request) (*clientnetworkingv1alpha3.EnvoyFilter, error) {
	if req.GetBody == nil {
		return nil, fmt.Errorf("%s %s: body cannot be read twice", req.Method, req.URL.Path)
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	defer func() { _ = body.Close() }()
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	ef := &clientnetworkingv1alpha3.EnvoyFilter{}
	if err := json.Unmarshal(data, ef); err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", req.Method, req.URL.Path, err)
	}
	return ef, nil
}

// userEnvoyFilter is an EnvoyFilter someone wrote by hand in the root namespace, for
// workloads that do not exist.
func userEnvoyFilter(name string, labels map[string]string) *clientnetworkingv1alpha3.EnvoyFilter {
	ef := &clientnetworkingv1alpha3.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rootNS, Labels: labels}}
	ef.Spec.WorkloadSelector = &networkingv1alpha3.WorkloadSelector{Labels: map[string]string{"app": "nobody"}}
	ef.Spec.ConfigPatches = []*networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectPatch{{
		ApplyTo: networkingv1alpha3.EnvoyFilter_NETWORK_FILTER,
		Match: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch{
			Context: networkingv1alpha3.EnvoyFilter_SIDECAR_OUTBOUND,
			ObjectTypes: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: &networkingv1alpha3.EnvoyFilter_ListenerMatch{
				PortNumber:  20880,
				FilterChain: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterChainMatch{Filter: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterMatch{Name: tcpFilter}},
			}},
		},
		Patch: &networkingv1alpha3.EnvoyFilter_Patch{Operation: networkingv1alpha3.EnvoyFilter_Patch_REMOVE},
	}}
	return ef
}

// addAddress gives the service's ServiceEntry one more VIP, which changes its outbound
// EnvoyFilter.
func (e *env) addAddress(t *testing.T, d dubboService, vip string) {
	t.Helper()
	ses := e.istio.NetworkingV1().ServiceEntries(appNS)
	se, err := ses.Get(t.Context(), d.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	se.Spec.Addresses = append(se.Spec.Addresses, vip)
	if _, err := ses.Update(t.Context(), se, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating ServiceEntry %s: %v", d.name, err)
	}
}

// waitSpec waits until the EnvoyFilter exists, has the spec (as YAML; "" for any) and
// satisfies also.
func (e *env) waitSpec(t *testing.T, key types.NamespacedName, want string, also func(*clientnetworkingv1alpha3.EnvoyFilter) bool) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ef, err := e.istio.NetworkingV1alpha3().EnvoyFilters(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			last = "(not found)"
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = specYAML(t, ef)
		return (want == "" || last == want) && also(ef), nil
	})
	if err != nil {
		t.Fatalf("EnvoyFilter %s never came back as expected (%v); last spec:\n%s\nwant:\n%s", key, err, last, want)
	}
}

func specYAML(t *testing.T, ef *clientnetworkingv1alpha3.EnvoyFilter) string {
	t.Helper()
	out, err := yaml.Marshal(&ef.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// objectVersion tells whether an object was deleted (uid) or written (resourceVersion).
type objectVersion struct {
	uid             types.UID
	resourceVersion string
	generation      int64
}

// versions returns the current versions of EnvoyFilters.
func (e *env) versions(t *testing.T, keys ...types.NamespacedName) map[types.NamespacedName]objectVersion {
	t.Helper()
	out := map[types.NamespacedName]objectVersion{}
	for _, key := range keys {
		ef, err := e.istio.NetworkingV1alpha3().EnvoyFilters(key.Namespace).Get(t.Context(), key.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out[key] = objectVersion{uid: ef.UID, resourceVersion: ef.ResourceVersion, generation: ef.Generation}
	}
	return out
}

// checkUnchanged fails the test if an EnvoyFilter was deleted or written since versions.
func (e *env) checkUnchanged(t *testing.T, before map[types.NamespacedName]objectVersion) {
	t.Helper()
	keys := make([]types.NamespacedName, 0, len(before))
	for key := range before {
		keys = append(keys, key)
	}
	after := e.versions(t, keys...)
	for _, key := range keys {
		if after[key] != before[key] {
			t.Errorf("EnvoyFilter %s was deleted or written: before %+v, after %+v", key, before[key], after[key])
		}
	}
}

// recorder records the writes (every request but GET and HEAD) a controller sends to
// the apiserver, with the answer, by wrapping the transport of its rest.Config.
type recorder struct {
	// beforeWrite, if set, runs before each write is sent; it may block, and must
	// be safe for concurrent use.
	beforeWrite func(*http.Request, apiRequest)
	// cutOff, once set, fails every new request before it is sent, as if the process
	// had died or lost the network: nothing more is recorded.
	cutOff atomic.Bool

	mu     sync.Mutex
	writes []apiRequest
}

// apiRequest is one write as the recorder saw it.
type apiRequest struct {
	method                    string
	resource, namespace, name string // from the path; name is empty for a create
	status                    int    // 0: no response
	err                       error
}

func (w apiRequest) succeeded() bool { return w.status >= 200 && w.status < 300 }

func (w apiRequest) String() string {
	if w.err != nil {
		return fmt.Sprintf("%s %s %s/%s: %v", w.method, w.resource, w.namespace, w.name, w.err)
	}
	return fmt.Sprintf("%s %s %s/%s: %d", w.method, w.resource, w.namespace, w.name, w.status)
}

var errCutOff = errors.New("cut off by the test")

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// config returns a copy of cfg whose requests the recorder sees.
func (r *recorder) config(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if r.cutOff.Load() {
				return nil, errCutOff
			}
			if req.Method == http.MethodGet || req.Method == http.MethodHead {
				return next.RoundTrip(req)
			}
			w := parseRequest(req)
			if r.beforeWrite != nil {
				r.beforeWrite(req, w)
			}
			resp, err := next.RoundTrip(req)
			if resp != nil {
				w.status = resp.StatusCode
			}
			w.err = err
			r.mu.Lock()
			r.writes = append(r.writes, w)
			r.mu.Unlock()
			return resp, err
		})
	})
	return cfg
}

// parseRequest reads resource, namespace and name from a namespaced API path such as
// /apis/GROUP/VERSION/namespaces/NS/RESOURCE/NAME.
func parseRequest(req *http.Request) apiRequest {
	w := apiRequest{method: req.Method}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	i := slices.Index(parts, "namespaces")
	if i >= 0 && i+2 < len(parts) {
		w.namespace, w.resource = parts[i+1], parts[i+2]
		if i+3 < len(parts) {
			w.name = parts[i+3]
		}
	}
	return w
}

// list returns the recorded writes that match, in the order they were answered.
func (r *recorder) list(match func(apiRequest) bool) []apiRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []apiRequest
	for _, w := range r.writes {
		if match(w) {
			out = append(out, w)
		}
	}
	return out
}

func (r *recorder) count(match func(apiRequest) bool) int { return len(r.list(match)) }

// waitUntil polls until done reports true.
func waitUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return done(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
