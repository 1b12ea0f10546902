package feedback

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"aeraki.io/aeraki/pkg/model"
)

// Guard contains what proxies reject. Per owner it remembers the filters written
// last and the last ones proxies accepted; once proxies keep rejecting what was
// written, the translation's filters for that owner are replaced by the accepted
// ones (or, if there never were any, left out, so that the port falls back to
// plain TCP, which every proxy accepts) until the translation wants something else:
// the rejected spec is not tried again while the owner's inputs stay the same.
//
// A rejection counts against what was written only if istiod sent the rejected
// update after the write, in Confirm reports in a row: istiod keeps a proxy's last
// error until the proxy accepts a later update, so a report taken between a push
// and the proxy's answer still shows the error of the push before. Filters count as
// accepted once they stood Settle without rejection.
//
// The zero value is not ready: use NewGuard. It is not safe for concurrent use.
type Guard struct {
	settle  time.Duration
	confirm int
	owners  map[Owner]*ownerState
}

// NewGuard returns a guard with nothing contained.
func NewGuard(settle time.Duration, confirm int) *Guard {
	return &Guard{settle: settle, confirm: max(confirm, 1), owners: map[Owner]*ownerState{}}
}

type ownerState struct {
	// applied is what was written last, and when.
	applied spec
	// accepted is the last spec that stood settle without rejection; nil for none.
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

// Containment is one owner whose filters proxies rejected.
type Containment struct {
	Owner Owner
	// Restored says the last accepted filters stand in; otherwise the owner's
	// filters are left out.
	Restored bool
	// Rejection is the last report's rejection, nil once proxies accept again.
	Rejection *Rejection
}

// Filter returns desired with the filters of every contained owner replaced, and
// the owners contained. An owner whose translated filters changed is no longer
// contained: the new ones are tried. desired itself is not modified.
func (g *Guard) Filter(desired map[string]*model.EnvoyFilter) (map[string]*model.EnvoyFilter, []Containment) {
	byOwner := group(desired)
	var out map[string]*model.EnvoyFilter
	var contained []Containment
	for _, owner := range slices.SortedFunc(maps.Keys(g.owners), compareOwners) {
		st := g.owners[owner]
		if st.rejected == "" {
			continue
		}
		if hashOf(byOwner[owner]) != st.rejected {
			st.rejected, st.seen = "", 0
			continue
		}
		if out == nil {
			out = maps.Clone(desired)
		}
		for key := range byOwner[owner] {
			delete(out, key)
		}
		c := Containment{Owner: owner, Rejection: st.rejection}
		if st.accepted != nil {
			maps.Copy(out, st.accepted.filters)
			c.Restored = true
		}
		contained = append(contained, c)
	}
	if out == nil {
		out = desired
	}
	return out, contained
}

// Applied records the filters written (Filter's result) at now.
func (g *Guard) Applied(filters map[string]*model.EnvoyFilter, now time.Time) {
	byOwner := group(filters)
	for owner, st := range g.owners {
		if _, ok := byOwner[owner]; !ok && st.rejected == "" {
			delete(g.owners, owner)
		}
	}
	for owner, efs := range byOwner {
		st := g.owners[owner]
		if st == nil {
			st = &ownerState{}
			g.owners[owner] = st
		}
		if h := hashOf(efs); h != st.applied.hash {
			st.applied, st.seen = spec{hash: h, filters: efs, at: now}, 0
		}
	}
	// Contained owners whose filters are all left out wrote nothing.
	for owner, st := range g.owners {
		if _, ok := byOwner[owner]; !ok && st.applied.hash != hashOf(nil) {
			st.applied, st.seen = spec{hash: hashOf(nil), at: now}, 0
		}
	}
}

// Observe takes a report at now and reports whether what Filter returns changed.
func (g *Guard) Observe(r *Report, now time.Time) bool {
	changed := false
	for owner, st := range g.owners {
		rej := r.Rejections[owner]
		st.rejection = rej
		fresh := rej != nil && !rej.Sent.Before(st.applied.at) && len(st.applied.filters) > 0
		if !fresh {
			st.seen = 0
			if rej == nil && len(st.applied.filters) > 0 && now.Sub(st.applied.at) >= g.settle {
				accepted := st.applied
				st.accepted = &accepted
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

// Contained returns the owners contained, ordered, with their last rejection.
func (g *Guard) Contained() []Containment {
	var out []Containment
	for _, owner := range slices.SortedFunc(maps.Keys(g.owners), compareOwners) {
		if st := g.owners[owner]; st.rejected != "" {
			out = append(out, Containment{Owner: owner, Restored: st.accepted != nil, Rejection: st.rejection})
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

// group splits filters by owner.
func group(filters map[string]*model.EnvoyFilter) map[Owner]map[string]*model.EnvoyFilter {
	out := map[Owner]map[string]*model.EnvoyFilter{}
	for key, ef := range filters {
		o := OwnerOf(ef)
		if out[o] == nil {
			out[o] = map[string]*model.EnvoyFilter{}
		}
		out[o][key] = ef
	}
	return out
}

// hashOf fingerprints an owner's filters: their keys and specs.
func hashOf(filters map[string]*model.EnvoyFilter) string {
	h := sha256.New()
	for _, key := range slices.Sorted(maps.Keys(filters)) {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(filters[key].Spec)
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
