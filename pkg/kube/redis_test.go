package kube

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"istio.io/istio/tests/util/leak"
	corev1 "k8s.io/api/core/v1"
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
