package push

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/feedback"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
)

// FeedbackOptions turn on sidecar feedback: the controller is told what proxies
// rejected (Controller.ObserveProxies), reports what our filters caused on the
// user's objects and, with Contain, stands the last accepted filters in for the
// rejected ones (see feedback.Guard).
type FeedbackOptions struct {
	// Contain replaces filters proxies reject; off, rejections are only reported.
	Contain bool
	// Protocols maps the network filters the generators write to their protocols.
	Protocols map[string]model.Protocol
	// Settle and Confirm tune the guard (see feedback.NewGuard).
	Settle  time.Duration
	Confirm int
}

// feedbackState is what the controller knows of the proxies' verdicts. Pushes and
// observations come from different goroutines.
type feedbackState struct {
	opts FeedbackOptions
	root string

	mu sync.Mutex
	// guard is nil without containment.
	guard *feedback.Guard
	// written is what the last push wrote; services its translation's services:
	// copies, kept in step key by key, as the translation's own maps change during
	// the next push while proxies are observed.
	written  map[string]*model.EnvoyFilter
	services map[string]*model.Service
	// index is written's, made when a look first needs it.
	index *feedback.Index
	// report is the last observation's, made at observedAt.
	report     *feedback.Report
	observedAt time.Time
	// reported is what was last reported per owner, so that each state is
	// reported once.
	reported map[feedback.Owner]string
}

func newFeedbackState(opts *FeedbackOptions, root string) *feedbackState {
	if opts == nil {
		return nil
	}
	fb := &feedbackState{opts: *opts, root: root, reported: map[feedback.Owner]string{},
		written: map[string]*model.EnvoyFilter{}, services: map[string]*model.Service{}}
	if opts.Contain {
		fb.guard = feedback.NewGuard(opts.Settle, opts.Confirm)
	}
	return fb
}

// filter returns what to write instead of the translation's filters, and whether
// that is not the translation's (filters are contained). It takes in the
// translation's services: those it changed, or all when whole.
func (fb *feedbackState) filter(t *translate.Translation, whole bool) (map[string]*model.EnvoyFilter, bool) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	copyKeys(fb.services, t.ByKey, t.ChangedServices, whole)
	desired := t.Filters
	if fb.guard == nil {
		return desired, false
	}
	written := fb.guard.Filter(desired)
	return written, len(fb.guard.Contained()) > 0
}

// applied records what a push wrote: keys are those of written that may have
// changed since the push before (nil: any may).
func (fb *feedbackState) applied(written map[string]*model.EnvoyFilter, keys map[string]bool, changed []*model.EnvoyFilter, now time.Time) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(changed) > 0 {
		fb.index = nil
	}
	copyKeys(fb.written, written, keys, keys == nil)
	if fb.guard != nil {
		fb.guard.Applied(written, keys, changed, now)
	}
}

// copyKeys copies the entries of keys (all when whole) from src into dst, deleting
// those src does not have.
func copyKeys[V any](dst, src map[string]V, keys map[string]bool, whole bool) {
	if whole {
		clear(dst)
		maps.Copy(dst, src)
		return
	}
	for k := range keys {
		if v, ok := src[k]; ok {
			dst[k] = v
		} else {
			delete(dst, k)
		}
	}
}

// writeFailed forgets the index: some of the writes took, and the next push that
// finds nothing to change does not say which.
func (fb *feedbackState) writeFailed() {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	fb.index = nil
}

// ObserveProxies takes what istiod says its proxies accepted: it ties the
// rejections to our filters, reports them, and, with containment, pushes when what
// to write changed. Only the leader acts; the other replicas have nothing written
// to answer for.
func (c *Controller) ObserveProxies(sync *model.ProxySync) {
	fb := c.fb
	if fb == nil || !c.leading() {
		return
	}
	now := time.Now()
	fb.mu.Lock()
	// Most looks find nothing rejected, and need no index; a lasting rejection
	// reuses it until the next write.
	if fb.index == nil && len(sync.Rejecting) > 0 {
		fb.index = feedback.NewIndex(fb.written, fb.root, fb.opts.Protocols)
	}
	idx := fb.index
	if idx == nil {
		idx = feedback.NewIndex(nil, fb.root, fb.opts.Protocols)
	}
	r := feedback.Attribute(sync, idx)
	changed := false
	var contained []feedback.Containment
	if fb.guard != nil {
		changed = fb.guard.Observe(r, now)
		contained = fb.guard.Contained()
	}
	fb.report, fb.observedAt = r, sync.At
	notes, newly, cleared := fb.notes(r, contained)
	fb.mu.Unlock()

	c.opts.Metrics.ObservedProxies(r, newly, len(contained))
	for _, n := range notes {
		n.emit(c)
	}
	// A push also tells the Redis objects of a service rejected, or accepted again.
	if changed || len(newly) > 0 || cleared {
		c.Trigger()
	}
}

// verdicts returns the translation's verdicts, with the Redis objects of the
// services proxies reject not Ready, and whether any are rejected.
func (fb *feedbackState) verdicts(in map[model.ObjectRef]model.Verdict) (map[model.ObjectRef]model.Verdict, bool) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if fb.report == nil || len(fb.report.Rejections) == 0 {
		return in, false
	}
	out := maps.Clone(in)
	for owner, rej := range fb.report.Rejections {
		svc := fb.services[ownerService(owner)]
		if svc == nil {
			continue
		}
		refs := make([]model.ObjectRef, 0, len(svc.RedisServices)+len(svc.RedisDestinations))
		for _, o := range svc.RedisServices {
			refs = append(refs, model.ObjectRef{Kind: model.KindRedisService, Namespace: o.Namespace, Name: o.Name})
		}
		for _, o := range svc.RedisDestinations {
			refs = append(refs, model.ObjectRef{Kind: model.KindRedisDestination, Namespace: o.Namespace, Name: o.Name})
		}
		for _, ref := range refs {
			v, ok := out[ref]
			if !ok || !v.Ready {
				continue
			}
			out[ref] = model.Verdict{Reason: redisspec.ReasonRejectedByProxies, Generation: v.Generation, Message: model.Shorten(fmt.Sprintf(
				"%d %s the EnvoyFilters of %s (for example %s): %s", rej.Proxies, plural(rej.Proxies, "proxy rejects", "proxies reject"),
				describe(owner, svc), rej.Example, rej.Detail), model.MaxConditionMessage)}
		}
	}
	return out, true
}

// note is one thing to tell about an owner.
type note struct {
	owner   feedback.Owner
	svc     *model.Service
	warning bool
	msg     string
}

func (n note) emit(c *Controller) {
	log := c.opts.Log.WithValues("owner", n.owner.String())
	if n.svc != nil {
		log = log.WithValues("kind", n.svc.Kind(), "namespace", n.svc.Namespace, "name", n.svc.ObjectName())
	}
	if !n.warning {
		log.Info(n.msg)
		return
	}
	log.Error(nil, n.msg)
	if c.opts.Recorder != nil && n.svc != nil {
		c.opts.Recorder.Eventf(objectRef(n.svc), nil, corev1.EventTypeWarning, ReasonRejectedByProxies, "Observe", "%s",
			model.Shorten(n.msg, model.MaxEventNote))
	}
}

// ReasonRejectedByProxies is the reason of the Events telling that proxies reject a
// service's EnvoyFilters.
const ReasonRejectedByProxies = "RejectedByProxies"

// notes returns what changed since the last report, the rejections seen for the
// first time, and whether some owner is no longer rejected. Counts alone changing
// is not news.
func (fb *feedbackState) notes(r *feedback.Report, contained []feedback.Containment) ([]note, []*feedback.Rejection, bool) {
	state := map[feedback.Owner]string{}
	for _, c := range contained {
		if c.Restored {
			state[c.Owner] = "the EnvoyFilters last accepted stand in until its config changes"
		} else {
			state[c.Owner] = "its EnvoyFilters are left out (the ports stay plain TCP) until its config changes"
		}
	}
	var out []note
	var newly []*feedback.Rejection
	for _, owner := range slices.SortedFunc(maps.Keys(r.Rejections), compareOwners) {
		rej := r.Rejections[owner]
		action := state[owner]
		if action == "" {
			action = "they stay as they are"
			if fb.guard != nil {
				action += " until the rejection is confirmed"
			}
		}
		key := rej.Detail + "\x00" + action
		if _, seen := fb.reported[owner]; !seen {
			newly = append(newly, rej)
		}
		if fb.reported[owner] == key {
			continue
		}
		fb.reported[owner] = key
		svc := fb.services[ownerService(owner)]
		out = append(out, note{owner: owner, svc: svc, warning: true, msg: fmt.Sprintf(
			"%d %s the %s of %s (for example %s): %s; %s", rej.Proxies, plural(rej.Proxies, "proxy rejects", "proxies reject"),
			plural(len(rej.Filters), "EnvoyFilter", "EnvoyFilters"), describe(owner, svc), rej.Example, rej.Detail, action)})
	}
	cleared := false
	for _, owner := range slices.SortedFunc(maps.Keys(fb.reported), compareOwners) {
		if _, still := r.Rejections[owner]; still {
			continue
		}
		cleared = true
		delete(fb.reported, owner)
		msg := "proxies accept the EnvoyFilters again"
		if action := state[owner]; action != "" {
			msg += "; " + action
		}
		out = append(out, note{owner: owner, svc: fb.services[ownerService(owner)], msg: msg})
	}
	return out, newly, cleared
}

func ownerService(o feedback.Owner) string {
	if o.Kind == feedback.OwnerService {
		return o.Key
	}
	return ""
}

func compareOwners(a, b feedback.Owner) int {
	return strings.Compare(a.String(), b.String())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// describe names an owner for the user: the object a service came from, or the
// shared port.
func describe(o feedback.Owner, svc *model.Service) string {
	switch {
	case svc != nil:
		return svc.Kind() + " " + svc.Namespace + "/" + svc.ObjectName()
	case o.Kind == feedback.OwnerSharedPort:
		return "shared port " + o.Key
	}
	return o.Key
}

// Status is what the controller knows of the EnvoyFilters it wrote and of the
// proxies' verdicts on them: what `aeraki status` prints.
type Status struct {
	// Leader says whether this replica writes; only the leader looks at proxies.
	Leader bool `json:"leader"`
	// ObservedAt is when istiod last told what its proxies accepted; zero before.
	ObservedAt time.Time `json:"observedAt,omitzero"`
	// Proxies, InSync and Rejecting count istiod's proxies then.
	Proxies   int `json:"proxies"`
	InSync    int `json:"inSync"`
	Rejecting int `json:"rejecting"`
	// NotOurs counts the proxies rejecting only what is not ours, with an example.
	NotOurs        int    `json:"notOurs"`
	NotOursExample string `json:"notOursExample,omitempty"`
	// Services are the owners of the EnvoyFilters written, and those contained.
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one service's (or shared port's) EnvoyFilters and verdicts.
type ServiceStatus struct {
	// Name is the user's object ("ServiceEntry dubbo/broker") or the shared port.
	Name         string   `json:"name"`
	EnvoyFilters []string `json:"envoyFilters"`
	// Rejecting counts the proxies rejecting them; Example and Detail tell one.
	Rejecting int    `json:"rejecting"`
	Example   string `json:"example,omitempty"`
	Detail    string `json:"detail,omitempty"`
	// Contained says what stands in while proxies reject the translation's
	// filters: "restored" (the last accepted ones) or "left out" (none).
	Contained string `json:"contained,omitempty"`
}

// Status returns what `aeraki status` prints.
func (c *Controller) Status() Status {
	st := Status{Leader: c.leading()}
	fb := c.fb
	if fb == nil {
		return st
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	byOwner := map[feedback.Owner]*ServiceStatus{}
	entry := func(o feedback.Owner) *ServiceStatus {
		s := byOwner[o]
		if s == nil {
			s = &ServiceStatus{Name: describe(o, fb.services[ownerService(o)]), EnvoyFilters: []string{}}
			byOwner[o] = s
		}
		return s
	}
	for key, ef := range fb.written {
		s := entry(feedback.OwnerOf(ef))
		s.EnvoyFilters = append(s.EnvoyFilters, key)
	}
	if r := fb.report; r != nil {
		st.Proxies, st.InSync, st.Rejecting, st.NotOurs = r.Proxies, r.InSync, r.Rejecting, r.Unattributed
		if p := r.UnattributedExample; p != nil {
			st.NotOursExample = p.ID + ": " + strings.TrimSpace(p.Listeners+"\n"+p.Clusters)
		}
		for owner, rej := range r.Rejections {
			s := entry(owner)
			s.Rejecting, s.Example, s.Detail = rej.Proxies, rej.Example, rej.Detail
		}
	}
	if fb.guard != nil {
		for _, cont := range fb.guard.Contained() {
			s := entry(cont.Owner)
			s.Contained = "left out"
			if cont.Restored {
				s.Contained = "restored"
			}
		}
	}
	st.ObservedAt = fb.observedAt
	for _, s := range byOwner {
		slices.Sort(s.EnvoyFilters)
		st.Services = append(st.Services, *s)
	}
	slices.SortFunc(st.Services, func(a, b ServiceStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}
