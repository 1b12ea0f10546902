package xds

import (
	"fmt"
	"maps"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	mcp "istio.io/api/mcp/v1alpha1"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"

	"aeraki.io/aeraki/pkg/model"
)

// pushBatch collects istiod's responses until they make up one whole push: the
// latest response of every watched type, all of one version. It is not locked: the
// Watcher guards it.
type pushBatch struct {
	types   []string
	pending map[string]*discovery.DiscoveryResponse
}

func newPushBatch(types []string) *pushBatch {
	return &pushBatch{types: types, pending: map[string]*discovery.DiscoveryResponse{}}
}

// add records a response (a newer one of a type replaces the older) and reports
// whether the batch is now whole.
func (b *pushBatch) add(resp *discovery.DiscoveryResponse) bool {
	b.pending[resp.GetTypeUrl()] = resp
	return b.whole()
}

// whole reports whether every watched type has a response since the last take, all
// with the same version_info.
func (b *pushBatch) whole() bool {
	version := ""
	for i, t := range b.types {
		r, ok := b.pending[t]
		if !ok {
			return false
		}
		if i == 0 {
			version = r.GetVersionInfo()
		} else if r.GetVersionInfo() != version {
			return false
		}
	}
	return true
}

// missing lists the watched types without a response since the last take, and the
// versions of those with one, for the log.
func (b *pushBatch) missing() (types, versions []string) {
	for _, t := range b.types {
		if r, ok := b.pending[t]; ok {
			versions = append(versions, r.GetVersionInfo())
		} else {
			types = append(types, t)
		}
	}
	return types, versions
}

// empty reports whether nothing is pending.
func (b *pushBatch) empty() bool { return len(b.pending) == 0 }

// take returns the pending responses and starts a new batch.
func (b *pushBatch) take() map[string]*discovery.DiscoveryResponse {
	out := b.pending
	b.pending = map[string]*discovery.DiscoveryResponse{}
	return out
}

// decodeResources turns the resources of an "api" response into configs of kind k.
// A resource that cannot be read is skipped and reported, as adsc does; istiod has
// validated what it sends.
func decodeResources(k config.GroupVersionKind, resp *discovery.DiscoveryResponse) ([]config.Config, []error) {
	var (
		out  []config.Config
		errs []error
	)
	for _, a := range resp.GetResources() {
		r := &mcp.Resource{}
		if err := a.UnmarshalTo(r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.Kind, err))
			continue
		}
		ns, name, ok := strings.Cut(r.GetMetadata().GetName(), "/")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: resource name %q is not namespace/name", k.Kind, r.GetMetadata().GetName()))
			continue
		}
		spec, err := r.GetBody().UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", k.Kind, ns, name, err))
			continue
		}
		md := r.GetMetadata()
		c := config.Config{
			Meta: config.Meta{
				GroupVersionKind: k,
				Name:             name,
				Namespace:        ns,
				ResourceVersion:  md.GetVersion(),
				Labels:           md.GetLabels(),
				Annotations:      md.GetAnnotations(),
			},
			Spec: spec,
		}
		if md.GetCreateTime() != nil {
			c.CreationTimestamp = md.GetCreateTime().AsTime()
		}
		out = append(out, c)
	}
	return out, errs
}

// replaceKind makes the store's objects of kind k those of cfgs, as istiod's
// state-of-the-world response for the kind says: new ones created, changed ones
// (another resource version, or none, as istiod's synthetic ServiceEntries have)
// updated, absent ones deleted.
func replaceKind(store *memory.Controller, k config.GroupVersionKind, cfgs []config.Config, changed func(namespace, name string)) []error {
	var errs []error
	seen := make(map[string]bool, len(cfgs))
	for _, c := range cfgs {
		seen[c.Namespace+"/"+c.Name] = true
		old := store.Get(k, c.Name, c.Namespace)
		switch {
		case old == nil:
			if _, err := store.Create(c); err != nil {
				errs = append(errs, fmt.Errorf("adding %s %s/%s: %w", k.Kind, c.Namespace, c.Name, err))
			}
			changed(c.Namespace, c.Name)
		case c.ResourceVersion == "" || c.ResourceVersion != old.ResourceVersion:
			if !sameContent(old, &c) {
				changed(c.Namespace, c.Name)
			}
			if c.ResourceVersion != "" {
				// The store takes the new version from this annotation, and drops it.
				c.Annotations = maps.Clone(c.Annotations)
				if c.Annotations == nil {
					c.Annotations = map[string]string{}
				}
				c.Annotations[memory.ResourceVersion] = c.ResourceVersion
				c.ResourceVersion = ""
			}
			if _, err := store.Update(c); err != nil {
				errs = append(errs, fmt.Errorf("updating %s %s/%s: %w", k.Kind, c.Namespace, c.Name, err))
			}
		}
	}
	for _, old := range store.List(k, "") {
		if seen[old.Namespace+"/"+old.Name] {
			continue
		}
		if err := store.Delete(k, old.Name, old.Namespace, nil); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s %s/%s: %w", k.Kind, old.Namespace, old.Name, err))
		}
		changed(old.Namespace, old.Name)
	}
	return errs
}

// responseHandler gets every response adsc receives, before adsc acknowledges it.
type responseHandler struct{ w *Watcher }

func (h responseHandler) HandleResponse(_ *adsc.ADSC, resp *discovery.DiscoveryResponse) {
	h.w.received(resp, time.Now())
}

// received adds a response to the pending batch and applies the batch once it is a
// whole push. The first response of a batch arms the timeout that applies it anyway.
func (w *Watcher) received(resp *discovery.DiscoveryResponse, now time.Time) {
	w.batchMu.Lock()
	defer w.batchMu.Unlock()
	if w.batchDone {
		return
	}
	if w.batch.empty() {
		w.batchStart = now
	}
	if w.batch.add(resp) {
		w.applyBatch(resp.GetVersionInfo(), now)
		return
	}
	if w.batchTimer == nil {
		w.batchTimer = time.AfterFunc(w.opts.wholePushTimeout, w.applyIncomplete)
	}
}

// applyIncomplete applies a batch that did not become whole in time: istiod did not
// send every type of its push (which the istiod this was written against always
// does), or the stream broke in the middle of one. Better late and possibly mixed
// than never.
func (w *Watcher) applyIncomplete() {
	w.batchMu.Lock()
	defer w.batchMu.Unlock()
	w.batchTimer = nil
	if w.batchDone || w.batch.empty() {
		return
	}
	missing, versions := w.batch.missing()
	w.log.Info("istiod's push did not bring every type in time; applying what came", "missing", missing,
		"versions", versions, "waited", w.opts.wholePushTimeout)
	w.applyBatch("", time.Now())
}

// applyBatch writes the pending responses into the store, all at once for
// Snapshot; the store's handlers then emit the Events. Called with batchMu held.
func (w *Watcher) applyBatch(version string, now time.Time) {
	if w.batchTimer != nil {
		w.batchTimer.Stop()
		w.batchTimer = nil
	}
	resps := w.batch.take()
	w.mu.RLock()
	store := w.store
	w.mu.RUnlock()
	if store == nil {
		return
	}
	if mesh := resps[gvk.MeshConfig.String()]; mesh != nil {
		w.applyMesh(mesh)
	}
	w.storeMu.Lock()
	for _, k := range watchedKinds() {
		resp := resps[k.gvk.String()]
		if resp == nil {
			continue
		}
		cfgs, errs := decodeResources(k.gvk, resp)
		errs = append(errs, replaceKind(store, k.gvk, cfgs, func(ns, name string) { w.changes.add(k.object, ns, name) })...)
		for _, err := range errs {
			w.log.Error(err, "cannot take an object from istiod's push; skipped")
		}
	}
	w.storeMu.Unlock()
	for t := range resps {
		w.applied[t] = true
	}
	if !w.synced.Load() && len(w.applied) == len(watchedTypeURLs()) {
		w.synced.Store(true)
	}
	w.log.V(2).Info("applied istiod's push", "version", version, "types", len(resps), "span", now.Sub(w.batchStart))
}

// applyMesh reads the export defaults from istiod's mesh config.
func (w *Watcher) applyMesh(resp *discovery.DiscoveryResponse) {
	if len(resp.GetResources()) == 0 {
		return
	}
	mesh := &meshconfig.MeshConfig{}
	if err := proto.Unmarshal(resp.GetResources()[0].GetValue(), mesh); err != nil {
		w.log.Error(err, "cannot read istiod's mesh config; keeping the export defaults as they were")
		return
	}
	w.setExportDefaults(model.ExportDefaultsOf(mesh))
}

// stopBatches stops applying responses, for good.
func (w *Watcher) stopBatches() {
	w.batchMu.Lock()
	defer w.batchMu.Unlock()
	w.batchDone = true
	if w.batchTimer != nil {
		w.batchTimer.Stop()
		w.batchTimer = nil
	}
}
