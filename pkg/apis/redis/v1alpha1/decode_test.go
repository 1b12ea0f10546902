package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// TestListWithUnreadableObject decodes a list as the informer does (the scheme's
// codec): an object whose spec this API cannot read (a duration it cannot parse, a
// type it does not have, status of another shape) is kept with its hosts and why,
// and the objects around it, one of them stored in the earlier percentage form,
// read as usual.
func TestListWithUnreadableObject(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	list := `{"apiVersion": "redis.aeraki.io/v1alpha1", "kind": "RedisServiceList", "items": [
	  {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"host": ["a"], "faults": [{"type": "ERROR", "percentage": 50}]}},
	  {"metadata": {"name": "old", "namespace": "ns"}, "spec": {"host": ["old"], "settings": {"opTimeout": "1d"}}, "status": {"conditions": "none"}},
	  {"metadata": {"name": "odd", "namespace": "ns"}, "spec": {"host": "not-a-list", "redis": [{"route": {"host": "b"}}]}},
	  {"metadata": {"name": "z", "namespace": "ns"}, "spec": {"host": ["z"], "faults": [{"percentage": {"value": 5}}]}}]}`
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(list), nil, nil)
	if err != nil {
		t.Fatalf("the list failed: %v", err)
	}
	items := obj.(*RedisServiceList).Items
	if len(items) != 4 {
		t.Fatalf("%d items, want 4", len(items))
	}
	a, old, odd, z := items[0], items[1], items[2], items[3]
	if a.Spec.Unreadable != "" || a.Spec.Faults[0].Percentage.Value != 50 {
		t.Errorf("a (a percentage as a number): %+v", a.Spec)
	}
	if z.Spec.Unreadable != "" || z.Spec.Faults[0].Percentage.Value != 5 || z.Name != "z" {
		t.Errorf("z: %+v", z)
	}
	if old.Name != "old" || old.Spec.Host[0] != "old" || !strings.Contains(old.Spec.Unreadable, "1d") || old.Spec.Settings != nil {
		t.Errorf("old (a duration this API cannot read): %+v", old.Spec)
	}
	if len(old.Status.Conditions) != 0 {
		t.Errorf("old's unreadable status was kept: %+v", old.Status)
	}
	if odd.Spec.Unreadable == "" || len(odd.Spec.Host) != 0 || len(odd.Spec.Redis) != 0 {
		t.Errorf("odd (hosts of another type): %+v", odd.Spec)
	}

	one := `{"apiVersion": "redis.aeraki.io/v1alpha1", "kind": "RedisDestination", "metadata": {"name": "d", "namespace": "ns"},
	  "spec": {"host": "d", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": "many"}}}}}`
	obj, _, err = serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(one), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := obj.(*RedisDestination); d.Spec.Host != "d" || d.Spec.Unreadable == "" || d.Spec.TrafficPolicy != nil {
		t.Errorf("d: %+v", d.Spec)
	}
}
