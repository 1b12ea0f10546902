package envoyfilter

import (
	"maps"
	"slices"

	"aeraki.io/aeraki/pkg/model"
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
// filter that belongs to a failed service (by its service annotation) is kept, never
// deleted: a generation error must not take down a working service.
func Plan(desired, current map[string]*model.EnvoyFilter, failed map[string]*ServiceError) Changes {
	var c Changes
	for _, k := range slices.Sorted(maps.Keys(desired)) {
		want := desired[k]
		have, ok := current[k]
		switch {
		case !ok:
			c.Create = append(c.Create, want)
		case !want.UpToDate(have):
			c.Update = append(c.Update, want)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(current)) {
		have := current[k]
		if _, ok := desired[k]; ok {
			continue
		}
		if _, keep := failed[have.Annotations[model.ServiceAnnotation]]; keep {
			continue
		}
		c.Delete = append(c.Delete, have)
	}
	return c
}
