package kube

import (
	"context"
	"errors"
	"testing"
	"time"

	"istio.io/istio/tests/util/leak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
)

// TestRedisLeaderElection runs two managers with the reconcilers against one apiserver:
// only the leader triggers pushes, checks and writes status; when it stops, the other
// takes over and writes.
func TestRedisLeaderElection(t *testing.T) {
	c := adminClient(t, apiserver.RestConfig(t))
	leak.Check(t, idleConnections) // after the apiserver and the admin client, which outlive the test
	ns := testNamespace(t, c, "redis-leader")
	opts := Options{
		LeaderElection:          true,
		LeaderElectionID:        "aeraki-redis-test",
		LeaderElectionNamespace: ns,
		// Short enough for a test, long enough that a busy machine renews in time;
		// failover itself is fast because a stopping leader releases the lease.
		LeaseDuration: 6 * time.Second,
		RenewDeadline: 4 * time.Second,
		RetryPeriod:   200 * time.Millisecond,
	}
	checkedBy := func(name string) func(client.Object) model.Verdict {
		return func(client.Object) model.Verdict {
			return model.Verdict{Ready: true, Reason: redisspec.ReasonAccepted, Message: "checked by " + name}
		}
	}
	a := startInstance(t, "a", opts, newTranslation("a", checkedBy("a")))
	waitFor(t, "a to lead", func(context.Context) error {
		if !a.elected() {
			return errors.New("not elected")
		}
		return nil
	})
	b := startInstance(t, "b", opts, newTranslation("b", checkedBy("b")))

	rs := &v1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: ns},
		Spec:       redisspec.RedisServiceSpec{Host: []string{"redis.example.com"}},
	}
	if err := c.Create(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, rs, metav1.ConditionTrue, redisspec.ReasonAccepted, "checked by a")

	// Give the follower every chance to act: rechecks (which must not block although
	// nothing consumes them), a spec change, and full reconciles on the leader.
	for range 100 {
		b.recheck()
	}
	rs.Spec.Host = append(rs.Spec.Host, "redis2.example.com")
	if err := c.Update(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, c, rs, metav1.ConditionTrue, redisspec.ReasonAccepted, "checked by a")
	a.settle(t, rs)
	if b.elected() {
		t.Fatal("both managers lead")
	}
	if n, m, w := b.tr.triggers.Load(), b.tr.totalChecks(), b.writes.count.Load(); n+int64(m)+w != 0 {
		t.Fatalf("the follower triggered %d pushes, made %d checks and %d status writes", n, m, w)
	}

	a.stop(t)
	waitCondition(t, c, rs, metav1.ConditionTrue, redisspec.ReasonAccepted, "checked by b")
	if !b.elected() {
		t.Error("b writes status without leading")
	}
	if b.tr.triggers.Load() == 0 {
		t.Error("the new leader triggered no push")
	}
}
