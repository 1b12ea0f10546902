package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"istio.io/istio/tests/util/leak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
)

const (
	noService = "no Service has host redis.example.com"
	accepted  = "redis_proxy on 1 port"
)

// TestRedisServiceStatus follows one RedisService from NoMatchingService to Ready: every
// reconcile triggers a push, the Ready condition and observedGeneration follow the
// verdict and the spec, a verdict is written and announced once, and recheckAll makes a
// new verdict visible.
func TestRedisServiceStatus(t *testing.T) {
	c := adminClient(t, apiserver.RestConfig(t))
	leak.Check(t, idleConnections) // after the apiserver and the admin client, which outlive the test
	ns := testNamespace(t, c, "redis-status")
	var serviceExists, conflict, pending atomic.Bool
	tr := newTranslation("a", func(client.Object) model.Verdict {
		switch {
		case pending.Load():
			return model.Verdict{Reason: redisspec.ReasonPending, Message: "waiting for the mesh config"}
		case conflict.Load():
			return model.Verdict{Reason: redisspec.ReasonConflict, Message: "host redis.example.com is also claimed by RedisService other"}
		case serviceExists.Load():
			return model.Verdict{Ready: true, Reason: redisspec.ReasonAccepted, Message: accepted}
		default:
			return model.Verdict{Reason: redisspec.ReasonNoMatchingService, Message: noService}
		}
	})
	in := startInstance(t, "a", Options{}, tr)

	rs := &v1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: ns},
		Spec:       redisspec.RedisServiceSpec{Host: []string{"redis.example.com"}},
	}
	if err := c.Create(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, rs, metav1.ConditionFalse, redisspec.ReasonNoMatchingService, noService)
	if tr.triggers.Load() == 0 {
		t.Fatal("reconcile did not trigger a push")
	}
	ev := waitAPIEvent(t, c, rs, corev1.EventTypeWarning, redisspec.ReasonNoMatchingService)
	if ev.Note != noService || ev.ReportingController != EventRecorderName {
		t.Errorf("Event note %q by %q, want %q by %q", ev.Note, ev.ReportingController, noService, EventRecorderName)
	}

	t.Run("unchanged verdict writes nothing", func(t *testing.T) {
		rv, writes := rs.ResourceVersion, in.writes.count.Load()
		in.settle(t, rs)
		if got := in.writes.count.Load(); got != writes {
			t.Errorf("%d status writes for an unchanged verdict", got-writes)
		}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(rs), rs); err != nil {
			t.Fatal(err)
		}
		if rs.ResourceVersion != rv {
			t.Errorf("resourceVersion %s, want %s unchanged", rs.ResourceVersion, rv)
		}
		if got := in.recorder.of(rs); len(got) != 1 {
			t.Errorf("Events %+v, want the first Warning only", got)
		}
	})

	t.Run("observedGeneration follows the spec", func(t *testing.T) {
		rs.Spec.Host = append(rs.Spec.Host, "redis2.example.com")
		if err := c.Update(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
		if rs.Generation != 2 {
			t.Fatalf("generation %d after a spec update, want 2", rs.Generation)
		}
		waitCondition(t, c, rs, metav1.ConditionFalse, redisspec.ReasonNoMatchingService, noService)
		in.settle(t, rs)
		if got := in.recorder.of(rs); len(got) != 1 {
			t.Errorf("Events %+v, want no new one for the same verdict", got)
		}
	})

	t.Run("recheckAll makes it Ready", func(t *testing.T) {
		serviceExists.Store(true)
		in.recheck()
		waitCondition(t, c, rs, metav1.ConditionTrue, redisspec.ReasonAccepted, accepted)
		waitAPIEvent(t, c, rs, corev1.EventTypeNormal, redisspec.ReasonAccepted)
		in.settle(t, rs)
		want := []recorded{
			{objKey(rs), corev1.EventTypeWarning, redisspec.ReasonNoMatchingService, noService},
			{objKey(rs), corev1.EventTypeNormal, redisspec.ReasonAccepted, accepted},
		}
		if got := in.recorder.of(rs); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Events\n%+v\nwant\n%+v", got, want)
		}
	})

	t.Run("a new reason is announced", func(t *testing.T) {
		conflict.Store(true)
		in.recheck()
		waitCondition(t, c, rs, metav1.ConditionFalse, redisspec.ReasonConflict, "host redis.example.com is also claimed by RedisService other")
		waitAPIEvent(t, c, rs, corev1.EventTypeWarning, redisspec.ReasonConflict)
		in.settle(t, rs)
		if got := in.recorder.of(rs); len(got) != 3 {
			t.Errorf("Events %+v, want 3", got)
		}
	})

	t.Run("Pending keeps the last verdict, also across a spec change", func(t *testing.T) {
		pending.Store(true)
		writes := in.writes.count.Load()
		in.settle(t, rs)
		if got := in.writes.count.Load(); got != writes {
			t.Errorf("%d status writes for a Pending verdict", got-writes)
		}
		// A new generation has no verdict until the push that reads it: the condition
		// keeps the last one, for the generation it was made for.
		before := rs.Generation
		rs.Spec.Host = rs.Spec.Host[:1]
		if err := c.Update(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
		in.settle(t, rs)
		if got := in.writes.count.Load(); got != writes {
			t.Errorf("%d status writes while the new generation has no verdict", got-writes)
		}
		cond, _, err := readyCondition(t.Context(), c, rs)
		if err != nil {
			t.Fatal(err)
		}
		if cond.Reason != redisspec.ReasonConflict || cond.ObservedGeneration != before {
			t.Errorf("condition %+v while generation %d has no verdict, want the Conflict of generation %d", *cond, rs.Generation, before)
		}
		// The push's verdict for the new generation: written, and not announced again
		// (it says what the last one said).
		pending.Store(false)
		in.recheck()
		waitCondition(t, c, rs, metav1.ConditionFalse, redisspec.ReasonConflict, "host redis.example.com is also claimed by RedisService other")
		in.settle(t, rs)
		if got := in.recorder.of(rs); len(got) != 3 {
			t.Errorf("Events %+v, want no new one: the verdict did not change", got)
		}
	})

	t.Run("deletion triggers a push", func(t *testing.T) {
		n := tr.triggers.Load()
		if err := c.Delete(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a push after the deletion", func(context.Context) error {
			if tr.triggers.Load() == n {
				return errors.New("no trigger yet")
			}
			return nil
		})
	})
}

// TestRedisSecretReferences proves that a change of a referenced Secret, and only of a
// referenced one, rechecks the RedisServices and RedisDestinations that name it, and
// that the verdict reads the Secret from the manager's cache.
func TestRedisSecretReferences(t *testing.T) {
	ctx := t.Context()
	c := adminClient(t, apiserver.RestConfig(t))
	leak.Check(t, idleConnections) // after the apiserver and the admin client, which outlive the test
	ns := testNamespace(t, c, "redis-secrets")
	const password, password2 = "pa55-never-logged", "n3w-pa55-never-logged"

	tr := newTranslation("a", func(client.Object) model.Verdict {
		return model.Verdict{Reason: redisspec.ReasonInvalid, Message: "not ready for objects yet"}
	})
	in := startInstance(t, "a", Options{}, tr)
	cache := in.mgr.GetClient()
	tr.setVerdict(func(obj client.Object) model.Verdict {
		kind := redisServiceKind()
		if _, ok := obj.(*v1alpha1.RedisDestination); ok {
			kind = redisDestinationKind()
		}
		name := kind.secretName(obj)
		s := &corev1.Secret{}
		if err := cache.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				return model.Verdict{Reason: redisspec.ReasonSecretNotFound, Message: "Secret " + name + " not found"}
			}
			return model.Verdict{Reason: redisspec.ReasonInvalid, Message: err.Error()}
		}
		if _, ok := s.Data["password"]; !ok {
			return model.Verdict{Reason: redisspec.ReasonSecretKeyNotFound, Message: fmt.Sprintf("Secret %s has no key password", name)}
		}
		return model.Verdict{Ready: true, Reason: redisspec.ReasonAccepted, Message: "auth from Secret " + name}
	})

	secret := func(name string, data map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	}
	auth, unrelated, marker := secret("redis-auth", map[string]string{"username": "u"}),
		secret("unrelated", map[string]string{"password": password}),
		secret("marker-auth", map[string]string{"password": password})
	for _, s := range []*corev1.Secret{auth, unrelated, marker} {
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the Secrets in the manager's cache", func(ctx context.Context) error {
		return cache.Get(ctx, client.ObjectKeyFromObject(marker), &corev1.Secret{})
	})

	service := func(name, secret string) *v1alpha1.RedisService {
		return &v1alpha1.RedisService{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: redisspec.RedisServiceSpec{
				Host:     []string{"redis.example.com"},
				Settings: &redisspec.RedisSettings{Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: secret}}},
			},
		}
	}
	destination := func(name, secret string) *v1alpha1.RedisDestination {
		return &v1alpha1.RedisDestination{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: redisspec.RedisDestinationSpec{
				Host: "redis.example.com",
				TrafficPolicy: &redisspec.TrafficPolicy{ConnectionPool: &redisspec.ConnectionPoolSettings{
					Redis: &redisspec.RedisConnectionSettings{Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: secret}}},
				}},
			},
		}
	}
	rs, rd := service("cache", "redis-auth"), destination("cache", "redis-auth")
	markerRS, markerRD := service("marker", "marker-auth"), destination("marker", "marker-auth")
	for _, o := range []client.Object{rs, rd, markerRS, markerRD} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []client.Object{rs, rd} {
		waitCondition(t, c, o, metav1.ConditionFalse, redisspec.ReasonSecretKeyNotFound, "Secret redis-auth has no key password")
		waitAPIEvent(t, c, o, corev1.EventTypeWarning, redisspec.ReasonSecretKeyNotFound)
	}
	for _, o := range []client.Object{markerRS, markerRD} {
		waitCondition(t, c, o, metav1.ConditionTrue, redisspec.ReasonAccepted, "auth from Secret marker-auth")
	}

	t.Run("unreferenced Secrets and label changes trigger nothing", func(t *testing.T) {
		in.settle(t, rs)
		in.settle(t, rd)
		checks := map[client.Object]int{}
		for _, o := range []client.Object{rs, rd, markerRS, markerRD} {
			checks[o] = tr.checked(o)
		}
		triggers := tr.triggers.Load()

		unrelated.StringData = map[string]string{"password": password2}
		if err := c.Update(ctx, unrelated); err != nil {
			t.Fatal(err)
		}
		auth.StringData = nil
		auth.Labels = map[string]string{"team": "cache"}
		if err := c.Update(ctx, auth); err != nil {
			t.Fatal(err)
		}
		// The marker: a data change of a Secret that only the markers reference. Each
		// controller's Secret handler sees the three updates in order and its queue is
		// FIFO with one worker, so whatever the first two enqueued is reconciled before
		// the markers are checked.
		marker.StringData = map[string]string{"password": password2}
		if err := c.Update(ctx, marker); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the markers checked", func(context.Context) error {
			if tr.checked(markerRS) == checks[markerRS] || tr.checked(markerRD) == checks[markerRD] {
				return errors.New("not yet")
			}
			return nil
		})
		for _, o := range []client.Object{rs, rd} {
			if got := tr.checked(o); got != checks[o] {
				t.Errorf("%s checked %d more times", objKey(o), got-checks[o])
			}
		}
		if got := tr.triggers.Load(); got != triggers+2 {
			t.Errorf("%d pushes triggered, want 2 (one per marker)", got-triggers)
		}
	})

	t.Run("a referenced Secret's change rechecks its referrers", func(t *testing.T) {
		triggers := tr.triggers.Load()
		auth.StringData = map[string]string{"password": password}
		if err := c.Update(ctx, auth); err != nil {
			t.Fatal(err)
		}
		for _, o := range []client.Object{rs, rd} {
			waitCondition(t, c, o, metav1.ConditionTrue, redisspec.ReasonAccepted, "auth from Secret redis-auth")
			waitAPIEvent(t, c, o, corev1.EventTypeNormal, redisspec.ReasonAccepted)
		}
		if got := tr.triggers.Load(); got < triggers+2 {
			t.Errorf("%d pushes triggered, want at least 2", got-triggers)
		}
	})

	t.Run("a deleted Secret", func(t *testing.T) {
		if err := c.Delete(ctx, auth); err != nil {
			t.Fatal(err)
		}
		for _, o := range []client.Object{rs, rd} {
			waitCondition(t, c, o, metav1.ConditionFalse, redisspec.ReasonSecretNotFound, "Secret redis-auth not found")
			waitAPIEvent(t, c, o, corev1.EventTypeWarning, redisspec.ReasonSecretNotFound)
		}
	})

	t.Run("no password in Events or logs", func(t *testing.T) {
		for _, o := range []client.Object{rs, rd, markerRS, markerRD} {
			evs, err := apiEvents(ctx, c, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if strings.Contains(e.Note, password) || strings.Contains(e.Note, password2) {
					t.Errorf("Event %s/%s shows a password: %q", e.Namespace, e.Name, e.Note)
				}
			}
		}
		if l := logs.String(); strings.Contains(l, password) || strings.Contains(l, password2) {
			t.Error("a log line shows a password")
		}
	})
}
