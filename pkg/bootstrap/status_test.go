package bootstrap

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
)

func TestRedisStatus(t *testing.T) {
	synced := false
	rechecks := 0
	st := &redisStatus{synced: func() bool { return synced }, recheck: func() { rechecks++ }}
	rs := &redisv1alpha1.RedisService{ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "redis", Generation: 2}}
	rd := &redisv1alpha1.RedisDestination{ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "redis", Generation: 2}}

	if v := st.verdict(rs); v.Reason != redisspec.ReasonPending || v.Message != "waiting for the mesh config from istiod" {
		t.Errorf("before the mesh config: %+v", v)
	}
	synced = true
	if v := st.verdict(rs); v.Reason != redisspec.ReasonPending {
		t.Errorf("before any push: %+v, want Pending", v)
	}

	accepted := model.Verdict{Ready: true, Reason: redisspec.ReasonAccepted, Message: "applies to Service redis/cache", Generation: 2}
	conflict := model.Verdict{Reason: redisspec.ReasonConflict, Message: "earlier", Generation: 2}
	verdicts := map[model.ObjectRef]model.Verdict{
		{Kind: model.KindRedisService, Namespace: "redis", Name: "cache"}:     accepted,
		{Kind: model.KindRedisDestination, Namespace: "redis", Name: "cache"}: conflict,
	}
	st.Publish(verdicts)
	if rechecks != 1 {
		t.Fatalf("%d rechecks after the first verdicts, want 1", rechecks)
	}
	// Objects of the two kinds with one name are told apart.
	if v := st.verdict(rs); v != accepted {
		t.Errorf("RedisService: %+v, want %+v", v, accepted)
	}
	if v := st.verdict(rd); v != conflict {
		t.Errorf("RedisDestination: %+v, want %+v", v, conflict)
	}
	// The same verdicts again: nothing to write, no recheck.
	st.Publish(map[model.ObjectRef]model.Verdict{
		{Kind: model.KindRedisService, Namespace: "redis", Name: "cache"}:     accepted,
		{Kind: model.KindRedisDestination, Namespace: "redis", Name: "cache"}: conflict,
	})
	if rechecks != 1 {
		t.Errorf("%d rechecks after unchanged verdicts, want 1", rechecks)
	}
	// A new generation has no verdict until a push has read it.
	rs.Generation = 3
	if v := st.verdict(rs); v.Reason != redisspec.ReasonPending || v.Ready {
		t.Errorf("generation 3 before its push: %+v, want Pending", v)
	}
	accepted.Generation = 3
	st.Publish(map[model.ObjectRef]model.Verdict{
		{Kind: model.KindRedisService, Namespace: "redis", Name: "cache"}:     accepted,
		{Kind: model.KindRedisDestination, Namespace: "redis", Name: "cache"}: conflict,
	})
	if v := st.verdict(rs); v != accepted || rechecks != 2 {
		t.Errorf("generation 3 after its push: %+v, %d rechecks", v, rechecks)
	}
}
