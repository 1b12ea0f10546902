package feedback

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	"aeraki.io/aeraki/pkg/model"
)

// Guard contains what proxies reject. Per owner it knows the filters written last
// and the last ones proxies accepted; once proxies keep rejecting what was written,
// the translation's filters for that owner are replaced by the accepted ones (or,
// if there never were any, left out, so that the port falls back to plain TCP,
// which every proxy accepts) until the translation wants something else: the
// rejected spec is not tried again while the owner's inputs stay the same.
//
// A rejection counts against what was written only if istiod sent the rejected
// update after the write, in confirm reports in a row: istiod keeps a proxy's last
// error until the proxy accepts a later update, so a report taken between a push
// and the proxy's answer still shows the error of the push before. Filters count as
// accepted once they stood settle without rejection; filters that were in place
// before the guard saw them change count as accepted.
//
// Its cost follows the changes, not the mesh: it keeps state only for owners whose
// filters changed or were rejected recently, and looks at the others only when
// proxies reject them. The zero value is not ready: use NewGuard. It is not safe
// for concurrent use.
type Guard struct {
	settle  time.Duration
	confirm int
	owners  map[Owner]*ownerState
	// last is what the last push wrote (Filter's result), its map copied, and
	// byOwner the same by owner.
	last    map[string]*model.EnvoyFilter
	byOwner map[Owner]map[string]*model.EnvoyFilter
}

// NewGuard returns a guard with nothing contained.
func NewGuard(settle time.Duration, confirm int) *Guard {
	return &Guard{settle: settle, confirm: max(confirm, 1), owners: map[Owner]*ownerState{},
		last: map[string]*model.EnvoyFilter{}, byOwner: map[Owner]map[string]*model.EnvoyFilter{}}
}

type ownerState struct {
	// applied is what was written last, and when.
	applied spec
	// accepted is the last spec proxies accepted; nil for none.
	accepted *spec
	// rejected is the hash of the translation's spec that proxies rejected; ""
	// while nothing is contained.
	rejected string
	// seen counts the reports in a row that rejected applied.
	seen int
	// rejection is the last report's rejection of the owner's filters, if any.
	rejection *Rejection
}

type spec struct {
	hash    string
	filters map[string]*model.EnvoyFilter
	at      time.Time
}

func newSpec(filters map[string]*model.EnvoyFilter, at time.Time) spec {
	return spec{hash: hashOf(filters), filters: filters, at: at}
}

// Containment is one owner whose filters proxies rejected.
type Containment struct {
	Owner Owner
	// Restored says the last accepted filters stand in; otherwise the owner's
	// filters are left out.
	Restored bool
}

// Filter returns desired with the filters of every contained owner replaced (see
// Contained). An owner whose translated filters changed is no longer contained: the
// new ones are tried. desired itself is not modified.
func (g *Guard) Filter(desired map[string]*model.EnvoyFilter) map[string]*model.EnvoyFilter {
	var contained []Owner
	for owner, st := range g.owners {
		if st.rejected != "" {
			contained = append(contained, owner)
		}
	}
	if len(contained) == 0 {
		return desired
	}
	byOwner := group(desired, contained)
	out := maps.Clone(desired)
	for _, owner := range contained {
		st := g.owners[owner]
		if hashOf(byOwner[owner]) != st.rejected {
			st.rejected, st.seen = "", 0
			continue
		}
		for key := range byOwner[owner] {
			delete(out, key)
		}
		if st.accepted != nil {
			maps.Copy(out, st.accepted.filters)
		}
	}
	return out
}

// Applied records what a push wrote at now: written is Filter's result, keys those
// of its filters that may have changed since the push before (nil: any may; then
// written is read whole), changed the EnvoyFilters created, updated or deleted.
func (g *Guard) Applied(written map[string]*model.EnvoyFilter, keys map[string]bool, changed []*model.EnvoyFilter, now time.Time) {
	touched := map[Owner]map[string]*model.EnvoyFilter{}
	for _, ef := range changed {
		owner := OwnerOf(ef)
		touched[owner] = maps.Clone(g.byOwner[owner])
	}
	g.record(written, keys)
	for owner, before := range touched {
		st := g.owners[owner]
		switch {
		case st == nil:
			// In place and unrejected until now: accepted.
			st = &ownerState{}
			if len(before) > 0 {
				accepted := newSpec(before, time.Time{})
				st.accepted = &accepted
			}
			g.owners[owner] = st
		case g.stood(st, now):
			accepted := st.applied
			st.accepted = &accepted
		}
		st.applied, st.seen = newSpec(maps.Clone(g.byOwner[owner]), now), 0
	}
}

// record takes written (its keys, or all of it) as what was written last.
func (g *Guard) record(written map[string]*model.EnvoyFilter, keys map[string]bool) {
	if keys == nil {
		g.last, g.byOwner = map[string]*model.EnvoyFilter{}, map[Owner]map[string]*model.EnvoyFilter{}
		keys = map[string]bool{}
		for k := range written {
			keys[k] = true
		}
	}
	for k := range keys {
		if old := g.last[k]; old != nil {
			owner := OwnerOf(old)
			delete(g.byOwner[owner], k)
			if len(g.byOwner[owner]) == 0 {
				delete(g.byOwner, owner)
			}
			delete(g.last, k)
		}
		ef := written[k]
		if ef == nil {
			continue
		}
		g.last[k] = ef
		owner := OwnerOf(ef)
		if g.byOwner[owner] == nil {
			g.byOwner[owner] = map[string]*model.EnvoyFilter{}
		}
		g.byOwner[owner][k] = ef
	}
}

// stood reports whether what was written for an owner stood settle, unrejected.
func (g *Guard) stood(st *ownerState, now time.Time) bool {
	return st.rejection == nil && len(st.applied.filters) > 0 && now.Sub(st.applied.at) >= g.settle
}

// Observe takes a report at now and reports whether what Filter returns changed.
func (g *Guard) Observe(r *Report, now time.Time) bool {
	var unknown []Owner
	for owner := range r.Rejections {
		if g.owners[owner] == nil {
			unknown = append(unknown, owner)
		}
	}
	if len(unknown) > 0 {
		// Rejected without a change of ours (a proxy that cannot run them joined):
		// what is in place is what was accepted until now.
		for _, owner := range unknown {
			applied := newSpec(maps.Clone(g.byOwner[owner]), time.Time{})
			g.owners[owner] = &ownerState{applied: applied, accepted: &applied}
		}
	}
	changed := false
	for owner, st := range g.owners {
		rej := r.Rejections[owner]
		st.rejection = rej
		fresh := rej != nil && !rej.Sent.Before(st.applied.at) && len(st.applied.filters) > 0
		if !fresh {
			st.seen = 0
			if g.stood(st, now) {
				accepted := st.applied
				st.accepted = &accepted
				if st.rejected == "" {
					// Nothing left to remember: what is in place is accepted.
					delete(g.owners, owner)
				}
			}
			continue
		}
		if st.seen++; st.seen < g.confirm {
			continue
		}
		switch {
		case st.rejected == "":
			// What the translation wants is rejected: stand the accepted filters in,
			// unless they are what was rejected.
			st.rejected = st.applied.hash
			if st.accepted != nil && st.accepted.hash == st.applied.hash {
				st.accepted = nil
			}
			changed = true
		case st.accepted != nil && st.accepted.hash == st.applied.hash:
			// The filters standing in are rejected too (a proxy that cannot run them
			// joined): leave them out.
			st.accepted = nil
			changed = true
		}
	}
	return changed
}

// Contained returns the owners contained, ordered.
func (g *Guard) Contained() []Containment {
	var out []Containment
	for _, owner := range slices.SortedFunc(maps.Keys(g.owners), compareOwners) {
		if st := g.owners[owner]; st.rejected != "" {
			out = append(out, Containment{Owner: owner, Restored: st.accepted != nil})
		}
	}
	return out
}

func compareOwners(a, b Owner) int {
	if a.Kind != b.Kind {
		if a.Kind < b.Kind {
			return -1
		}
		return 1
	}
	switch {
	case a.Key < b.Key:
		return -1
	case a.Key > b.Key:
		return 1
	}
	return 0
}

// group returns the filters of the owners given, by owner.
func group(filters map[string]*model.EnvoyFilter, owners []Owner) map[Owner]map[string]*model.EnvoyFilter {
	out := make(map[Owner]map[string]*model.EnvoyFilter, len(owners))
	for _, o := range owners {
		out[o] = nil
	}
	for key, ef := range filters {
		o := OwnerOf(ef)
		efs, wanted := out[o]
		if !wanted {
			continue
		}
		if efs == nil {
			efs = map[string]*model.EnvoyFilter{}
			out[o] = efs
		}
		efs[key] = ef
	}
	return out
}

// hashOf fingerprints an owner's filters: their keys and specs.
func hashOf(filters map[string]*model.EnvoyFilter) string {
	h := sha256.New()
	for _, key := range slices.Sorted(maps.Keys(filters)) {
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(filters[key].Digest()))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
