package bootstrap

import (
	"fmt"
	"maps"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
)

// redisStatus carries the verdicts of the last push to the Redis reconcilers: the
// Ready condition a user reads is the one the push computed while it translated, not
// a second resolution. It is the push loop's StatusSink.
type redisStatus struct {
	// synced tells whether the mesh config has arrived (before, there is no verdict).
	synced func() bool
	// recheck asks the reconcilers to look at every Redis object again; set once the
	// reconcilers are registered.
	recheck func()

	mu       sync.Mutex
	verdicts map[model.ObjectRef]model.Verdict
}

// Publish keeps the verdicts of a push and, when any changed, asks the reconcilers
// to write them.
func (s *redisStatus) Publish(verdicts map[model.ObjectRef]model.Verdict) {
	s.mu.Lock()
	changed := !maps.Equal(s.verdicts, verdicts)
	s.verdicts = verdicts
	s.mu.Unlock()
	if changed && s.recheck != nil {
		s.recheck()
	}
}

// verdict is the last push's verdict of obj, or Pending while there is none for the
// object's current generation (the push that reads it is on its way: the reconciler
// that asks has triggered it).
func (s *redisStatus) verdict(obj client.Object) model.Verdict {
	if !s.synced() {
		return model.Verdict{Reason: redisspec.ReasonPending, Message: "waiting for the mesh config from istiod"}
	}
	kind := model.KindRedisService
	if _, ok := obj.(*redisv1alpha1.RedisDestination); ok {
		kind = model.KindRedisDestination
	}
	s.mu.Lock()
	v, ok := s.verdicts[model.ObjectRef{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}]
	s.mu.Unlock()
	if !ok || v.Generation != obj.GetGeneration() {
		return model.Verdict{Reason: redisspec.ReasonPending, Message: fmt.Sprintf("waiting for the push that reads generation %d", obj.GetGeneration())}
	}
	return v
}
