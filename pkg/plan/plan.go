// Package plan diffs the desired EnvoyFilters against the cluster's: a pure function
// from two sets (and the failed services, whose filters are kept) to the writes.
package plan

import (
	"slices"
	"strings"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
)

// Changes are the writes that bring the cluster to the desired state, each list
// ordered by key.
type Changes struct {
	Create []*model.EnvoyFilter
	Update []*model.EnvoyFilter
	Delete []*model.EnvoyFilter
}

// Empty reports whether there is nothing to write.
func (c *Changes) Empty() bool {
	return len(c.Create)+len(c.Update)+len(c.Delete) == 0
}

// Plan diffs desired against current EnvoyFilters (those carrying our label). A current
// filter that belongs to a failed service (by its service annotation), or to a
// service whose view failed in the filter's namespace, is kept, never deleted: a
// generation error must not take down a working service.
func Plan(desired, current map[string]*model.EnvoyFilter, failed map[string]*translate.ServiceError) Changes {
	return plan(desired, current, failed, func(_ string, want, have *model.EnvoyFilter) bool { return want.UpToDate(have) })
}

// plan is Plan with the comparison given.
func plan(desired, current map[string]*model.EnvoyFilter, failed map[string]*translate.ServiceError, upToDate func(key string, want, have *model.EnvoyFilter) bool) Changes {
	var c Changes
	for k, want := range desired {
		have, ok := current[k]
		switch {
		case !ok:
			c.Create = append(c.Create, want)
		case !upToDate(k, want, have):
			c.Update = append(c.Update, want)
		}
	}
	for k, have := range current {
		if _, ok := desired[k]; ok {
			continue
		}
		owner := have.Annotations[model.ServiceAnnotation]
		if _, keep := failed[owner]; keep {
			continue
		}
		if _, keep := failed[translate.ViewKey(owner, have.Namespace)]; keep {
			continue
		}
		c.Delete = append(c.Delete, have)
	}
	// Sorted once found, not before: a push usually changes few of many.
	for _, list := range [][]*model.EnvoyFilter{c.Create, c.Update, c.Delete} {
		slices.SortFunc(list, func(a, b *model.EnvoyFilter) int { return strings.Compare(a.Key(), b.Key()) })
	}
	return c
}

// Planner plans push after push like Plan, remembering which desired EnvoyFilter
// it found up to date with which version of the object in the cluster. A desired
// filter reused from the Translator's cache is the same pointer push after push, so
// a push of one change compares the specs of that change only, not of every
// EnvoyFilter. Its zero value is ready to use.
type Planner struct {
	compared map[string]comparison
}

type comparison struct {
	want            *model.EnvoyFilter
	resourceVersion string
}

// Plan is Plan with the memory.
func (p *Planner) Plan(desired, current map[string]*model.EnvoyFilter, failed map[string]*translate.ServiceError) Changes {
	if p.compared == nil {
		p.compared = map[string]comparison{}
	}
	c := plan(desired, current, failed, p.upToDate)
	for k := range p.compared {
		if _, ok := desired[k]; !ok {
			delete(p.compared, k)
		}
	}
	return c
}

// Reset forgets every comparison: the next plan compares everything.
func (p *Planner) Reset() { p.compared = nil }

func (p *Planner) upToDate(key string, want, have *model.EnvoyFilter) bool {
	if c, ok := p.compared[key]; ok && c.want == want && have.ResourceVersion != "" && c.resourceVersion == have.ResourceVersion {
		return true
	}
	if !want.UpToDate(have) {
		return false
	}
	p.compared[key] = comparison{want: want, resourceVersion: have.ResourceVersion}
	return true
}

// Cluster is what an incremental plan reads of the cluster's EnvoyFilters (those
// carrying our label): one by key, and a service's by its annotation.
type Cluster interface {
	// Get returns the filter of key; nil when there is none.
	Get(key string) (*model.EnvoyFilter, error)
	// Owned returns the filters that name service in their service annotation.
	Owned(service string) ([]*model.EnvoyFilter, error)
}

// PlanChanges is Plan after an incremental translation (translate.Translator's
// Update), looking only at what may have changed: the filters t changed, those
// whose object in the cluster changed (cluster events; changed), and the cluster's
// filters of the services whose failures t may have changed. Everything else was
// planned before and found up to date, or written since: a push after one change
// plans that change, not every filter.
func (p *Planner) PlanChanges(t *translate.Translation, desired map[string]*model.EnvoyFilter, cluster Cluster, changed map[string]bool) (Changes, error) {
	if p.compared == nil {
		p.compared = map[string]comparison{}
	}
	keys := map[string]bool{}
	for k := range t.Changed {
		keys[k] = true
	}
	for k := range changed {
		keys[k] = true
	}
	current := map[string]*model.EnvoyFilter{}
	for svc := range t.ChangedServices {
		owned, err := cluster.Owned(svc)
		if err != nil {
			return Changes{}, err
		}
		for _, ef := range owned {
			keys[ef.Key()] = true
			current[ef.Key()] = ef
		}
	}
	want := map[string]*model.EnvoyFilter{}
	for k := range keys {
		if ef := desired[k]; ef != nil {
			want[k] = ef
		} else {
			delete(p.compared, k)
		}
		if _, ok := current[k]; ok {
			continue
		}
		have, err := cluster.Get(k)
		if err != nil {
			return Changes{}, err
		}
		if have != nil {
			current[k] = have
		}
	}
	return plan(want, current, t.Failed, p.upToDate), nil
}
