package feedback

import (
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
)

// guardRun drives a Guard as the controller does: a push (Filter, then Applied),
// then reports; the time moves on by a second a step.
type guardRun struct {
	t   *testing.T
	g   *Guard
	now time.Time
	// written is what the last push wrote.
	written map[string]*model.EnvoyFilter
}

const brokerKey = "istio-system/aeraki-outbound-broker.kafka.svc.cluster.local-9092"

var broker = Owner{OwnerService, "kafka/broker"}

func newGuardRun(t *testing.T) *guardRun {
	return &guardRun{t: t, g: NewGuard(10*time.Second, 2), now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

// brokerFilter is the Kafka service's outbound filter at a version: versions differ
// in their priority, which stands for anything the translation changes.
func brokerFilter(version int32) map[string]*model.EnvoyFilter {
	ef := proto.Clone(mesh()[brokerKey].Spec).(*networking.EnvoyFilter)
	ef.Priority = version
	return map[string]*model.EnvoyFilter{brokerKey: {Name: "aeraki-outbound-broker.kafka.svc.cluster.local-9092", Namespace: root,
		Annotations: service("kafka/broker"), Spec: ef}}
}

func (r *guardRun) push(desired map[string]*model.EnvoyFilter) {
	r.t.Helper()
	r.now = r.now.Add(time.Second)
	before := r.written
	r.written = r.g.Filter(desired)
	// What a plan would write: the filters created, changed or deleted; and the keys
	// whose filters are other objects than before, as a push tells them.
	keys := map[string]bool{}
	for key := range maps.Keys(r.written) {
		keys[key] = keys[key] || before[key] != r.written[key]
	}
	for key := range before {
		keys[key] = keys[key] || before[key] != r.written[key]
	}
	maps.DeleteFunc(keys, func(_ string, changed bool) bool { return !changed })
	var changed []*model.EnvoyFilter
	for key, ef := range r.written {
		if old, ok := before[key]; !ok || !proto.Equal(old.Spec, ef.Spec) {
			changed = append(changed, ef)
		}
	}
	for key, ef := range before {
		if _, ok := r.written[key]; !ok {
			changed = append(changed, ef)
		}
	}
	r.g.Applied(r.written, keys, changed, r.now)
}

// report is a report at the next second; rejecting says whether proxies reject the
// broker's filter, in an update istiod sent at sent (zero: just now).
func (r *guardRun) report(rejecting bool, sent time.Time) bool {
	r.now = r.now.Add(time.Second)
	rep := &Report{Rejections: map[Owner]*Rejection{}}
	if rejecting {
		if sent.IsZero() {
			sent = r.now
		}
		rep.Rejections[broker] = &Rejection{Owner: broker, Proxies: 1, Sent: sent}
	}
	return r.g.Observe(rep, r.now)
}

// wait lets the settle time pass with proxies accepting.
func (r *guardRun) settle() {
	r.now = r.now.Add(10 * time.Second)
	r.report(false, time.Time{})
}

// writes says which version of the broker's filter the last push wrote; 0 for none.
func (r *guardRun) wrote() int32 {
	ef := r.written[brokerKey]
	if ef == nil {
		return 0
	}
	return ef.Spec.GetPriority()
}

func TestGuardRestoresTheAcceptedFilters(t *testing.T) {
	r := newGuardRun(t)
	r.push(brokerFilter(1))
	r.settle() // v1 accepted

	r.push(brokerFilter(2))
	if r.report(true, time.Time{}) {
		t.Fatal("contained on one report: it may show the error of the update before")
	}
	if !r.report(true, time.Time{}) {
		t.Fatal("not contained after two reports of v2 rejected")
	}
	r.push(brokerFilter(2))
	if r.wrote() != 1 {
		t.Fatalf("wrote v%d while v2 is rejected, want the accepted v1", r.wrote())
	}
	c := r.g.Contained()
	if len(c) != 1 || c[0].Owner != broker || !c[0].Restored {
		t.Fatalf("contained %+v, want the broker, restored", c)
	}

	// The proxies' error of v2 stays until they accept v1: a report between istiod's
	// push of v1 and their answer still shows it. No change, no flapping.
	if r.report(true, r.now) {
		t.Fatal("the restored filters were given up on the error of the push before")
	}
	for range 3 {
		r.push(brokerFilter(2))
		if r.wrote() != 1 {
			t.Fatalf("wrote v%d, want v1 to stand while v2 is what the translation wants", r.wrote())
		}
		r.report(false, time.Time{})
	}
	r.settle()
	r.push(brokerFilter(2))
	if r.wrote() != 1 {
		t.Fatalf("wrote v%d after the proxies accepted v1 again: v2 must not be tried again unchanged", r.wrote())
	}

	// The inputs change: v3 is tried, and accepted.
	r.push(brokerFilter(3))
	if r.wrote() != 3 || len(r.g.Contained()) != 0 {
		t.Fatalf("wrote v%d, contained %v; want v3 tried", r.wrote(), r.g.Contained())
	}
	r.settle()
	r.push(brokerFilter(3))
	if r.wrote() != 3 {
		t.Fatalf("wrote v%d, want v3", r.wrote())
	}

	// v4 is rejected: v3, the last accepted, stands in.
	r.push(brokerFilter(4))
	r.report(true, time.Time{})
	r.report(true, time.Time{})
	r.push(brokerFilter(4))
	if r.wrote() != 3 {
		t.Fatalf("wrote v%d, want the last accepted v3", r.wrote())
	}
}

func TestGuardRemovesFiltersNeverAccepted(t *testing.T) {
	r := newGuardRun(t)
	r.push(brokerFilter(1))
	r.report(true, time.Time{})
	if !r.report(true, time.Time{}) {
		t.Fatal("not contained")
	}
	r.push(brokerFilter(1))
	if r.wrote() != 0 {
		t.Fatalf("wrote v%d, want nothing: no filters were ever accepted", r.wrote())
	}
	if c := r.g.Contained(); len(c) != 1 || c[0].Restored {
		t.Fatalf("contained %+v, want the broker, left out", c)
	}
	// Nothing written, nothing to reject: it stays out while the translation wants v1.
	for range 3 {
		r.settle()
		r.push(brokerFilter(1))
		if r.wrote() != 0 {
			t.Fatalf("wrote v%d, want v1 kept out", r.wrote())
		}
	}
}

func TestGuardIgnoresTheErrorOfAnEarlierUpdate(t *testing.T) {
	r := newGuardRun(t)
	r.push(brokerFilter(1))
	r.settle()
	r.push(brokerFilter(2))
	before := r.now.Add(-5 * time.Second)
	r.report(true, before)
	if r.report(true, before) {
		t.Fatal("contained for an error istiod sent before v2 was written")
	}
	r.settle()
	r.push(brokerFilter(2))
	if r.wrote() != 2 {
		t.Fatalf("wrote v%d, want v2, accepted", r.wrote())
	}
}

func TestGuardGivesUpFiltersThatBecomeRejected(t *testing.T) {
	r := newGuardRun(t)
	r.push(brokerFilter(1))
	r.settle() // accepted by the proxies there were
	// A proxy that cannot run it joins: the accepted filters themselves are rejected.
	r.report(true, time.Time{})
	if !r.report(true, time.Time{}) {
		t.Fatal("not contained")
	}
	r.push(brokerFilter(1))
	if r.wrote() != 0 {
		t.Fatalf("wrote v%d, want the filters left out: restoring them restores the rejection", r.wrote())
	}
}

// In the common case, every proxy accepting, the guard keeps nothing once the
// filters written have stood: its cost follows the changes.
func TestGuardForgetsWhatStood(t *testing.T) {
	r := newGuardRun(t)
	r.push(brokerFilter(1))
	if len(r.g.owners) != 1 {
		t.Fatalf("%d owners tracked after a change, want 1", len(r.g.owners))
	}
	r.settle()
	if len(r.g.owners) != 0 {
		t.Fatalf("%d owners tracked after the filters stood, want none", len(r.g.owners))
	}
	r.push(brokerFilter(1))
	if len(r.g.owners) != 0 {
		t.Fatalf("%d owners tracked after a push that changed nothing", len(r.g.owners))
	}
	// And what stood is what a later rejection restores.
	r.push(brokerFilter(2))
	r.report(true, time.Time{})
	r.report(true, time.Time{})
	r.push(brokerFilter(2))
	if r.wrote() != 1 {
		t.Fatalf("wrote v%d, want v1, which stood", r.wrote())
	}
}
