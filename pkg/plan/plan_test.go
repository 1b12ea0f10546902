package plan

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
)

func ef(name, service string, priority int32) *model.EnvoyFilter {
	return &model.EnvoyFilter{
		Name:        name,
		Namespace:   "istio-system",
		Labels:      model.ManagedLabels(),
		Annotations: map[string]string{model.ServiceAnnotation: service},
		Spec:        &networking.EnvoyFilter{Priority: priority},
	}
}

func inNamespace(e *model.EnvoyFilter, ns string) *model.EnvoyFilter {
	e.Namespace = ns
	return e
}

func byKey(efs ...*model.EnvoyFilter) map[string]*model.EnvoyFilter {
	m := map[string]*model.EnvoyFilter{}
	for _, e := range efs {
		m[e.Key()] = e
	}
	return m
}

func names(efs []*model.EnvoyFilter) []string {
	var out []string
	for _, e := range efs {
		out = append(out, e.Name)
	}
	return out
}

func TestPlan(t *testing.T) {
	withUserLabel := ef("same", "ns/a", 1)
	withUserLabel.Labels["team"] = "x"
	withUserLabel.Annotations["note"] = "kept"
	lostOurLabel := ef("relabel", "ns/a", 1)
	delete(lostOurLabel.Labels, model.StandardManagedByLabel)

	cases := []struct {
		name                   string
		desired, current       map[string]*model.EnvoyFilter
		failed                 map[string]*translate.ServiceError
		create, update, delete []string
	}{
		{name: "nothing"},
		{
			name:    "create update delete",
			desired: byKey(ef("new", "ns/a", 1), ef("changed", "ns/a", 2), ef("same", "ns/a", 1)),
			current: byKey(ef("changed", "ns/a", 1), ef("same", "ns/a", 1), ef("gone", "ns/b", 1)),
			create:  []string{"new"}, update: []string{"changed"}, delete: []string{"gone"},
		},
		{
			name:    "labels and annotations added by others are not a change",
			desired: byKey(ef("same", "ns/a", 1)),
			current: byKey(withUserLabel),
		},
		{
			name:    "a label of ours missing is a change",
			desired: byKey(ef("relabel", "ns/a", 1)),
			current: byKey(lostOurLabel),
			update:  []string{"relabel"},
		},
		{
			name:    "filters of a failed service are kept",
			desired: byKey(ef("other", "ns/ok", 1)),
			current: byKey(ef("other", "ns/ok", 1), ef("broken-out", "ns/broken", 1), ef("broken-in", "ns/broken", 1), ef("gone", "ns/deleted", 1)),
			failed:  map[string]*translate.ServiceError{"ns/broken": {Err: errors.New("bad")}},
			delete:  []string{"gone"},
		},
		{
			name:    "a failed view keeps the service's filters of its namespace only",
			desired: byKey(ef("svc-out", "ns/svc", 1)),
			current: byKey(ef("svc-out", "ns/svc", 1), inNamespace(ef("in-team", "ns/svc", 2), "team"), inNamespace(ef("in-other", "ns/svc", 2), "other")),
			failed:  map[string]*translate.ServiceError{translate.ViewKey("ns/svc", "team"): {Err: errors.New("bad")}},
			delete:  []string{"in-other"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Plan(c.desired, c.current, c.failed)
			if diff := cmp.Diff(c.create, names(got.Create)); diff != "" {
				t.Errorf("create (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.update, names(got.Update)); diff != "" {
				t.Errorf("update (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.delete, names(got.Delete)); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
			if got.Empty() != (len(c.create)+len(c.update)+len(c.delete) == 0) {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
}

// The Planner compares a desired filter with the cluster's object once per version
// of either, and plans like Plan otherwise.
func TestPlannerRemembersComparisons(t *testing.T) {
	want := ef("a", "ns/a", 1)
	inCluster := func(priority int32, version string) map[string]*model.EnvoyFilter {
		have := ef("a", "ns/a", priority)
		have.ResourceVersion = version
		return byKey(have)
	}
	var p Planner
	if c := p.Plan(byKey(want), inCluster(1, "7"), nil); !c.Empty() {
		t.Fatalf("first plan of an equal filter: %+v", c)
	}
	// The same desired object and the same version: not compared again. (A spec that
	// differs under an unchanged version cannot happen in a cluster; here it shows
	// the comparison was skipped.)
	if c := p.Plan(byKey(want), inCluster(99, "7"), nil); !c.Empty() {
		t.Errorf("remembered comparison not used: %+v", c)
	}
	if c := Plan(byKey(want), inCluster(99, "7"), nil); len(c.Update) != 1 {
		t.Errorf("Plan without memory: %+v, want one update", c)
	}
	// Edited in the cluster: a new version is compared.
	if c := p.Plan(byKey(want), inCluster(99, "8"), nil); !slices.Equal(names(c.Update), []string{"a"}) {
		t.Errorf("hand edit (new version): %+v, want an update of a", c)
	}
	// A new desired object (its service was generated again) is compared.
	if c := p.Plan(byKey(ef("a", "ns/a", 2)), inCluster(1, "7"), nil); !slices.Equal(names(c.Update), []string{"a"}) {
		t.Errorf("new desired filter: %+v, want an update of a", c)
	}
	// No version (not read from a cluster): always compared.
	if c := p.Plan(byKey(want), inCluster(99, ""), nil); len(c.Update) != 1 {
		t.Errorf("object without a version: %+v, want an update", c)
	}
	// Forgotten when no longer desired, and by Reset.
	p.Plan(nil, nil, nil)
	if len(p.compared) != 0 {
		t.Errorf("comparisons of filters no longer desired kept: %v", p.compared)
	}
	p.Plan(byKey(want), inCluster(1, "7"), nil)
	p.Reset()
	if c := p.Plan(byKey(want), inCluster(99, "7"), nil); len(c.Update) != 1 {
		t.Errorf("after Reset: %+v, want a fresh comparison and an update", c)
	}
}
