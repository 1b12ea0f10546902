package bootstrap

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/xds"
)

// How often the istiod's version is read again (an istiod upgraded under a running
// controller), and how soon a failed read is retried.
const (
	istiodReread = 5 * time.Minute
	istiodRetry  = 2 * time.Second
	// istiodTries is how many failed reads, with the config synced (istiod is up),
	// make the version unknown rather than hold the first push longer.
	istiodTries = 5
)

// istiodVersion knows which istiod the controller writes for: the version it reports
// (xds.ReadIstiod), or the one the operator set (--istiod-version). Generators then
// emit nothing that istiod cannot read (generator.Context.Istiod).
type istiodVersion struct {
	v atomic.Pointer[model.Istiod] // nil until known
}

// get returns the istiod and whether it is known yet (push.ControllerOptions.Istiod).
func (i *istiodVersion) get() (model.Istiod, bool) {
	if v := i.v.Load(); v != nil {
		return *v, true
	}
	return model.Istiod{}, false
}

// set records v and reports whether it changed.
func (i *istiodVersion) set(v model.Istiod) bool {
	old := i.v.Swap(&v)
	return old == nil || *old != v
}

// run reads istiod's version until ctx is done, calling changed when it changes. A
// refusal to answer (istiod's debug endpoints closed to us) or reads failing while
// the config is synced leave the version unknown, which generators treat as the
// newest Istio; the log says how to set it.
func (i *istiodVersion) run(ctx context.Context, opts xds.Options, synced func() bool, changed func(), log logr.Logger) {
	failures := 0
	for {
		v, err := xds.ReadIstiod(ctx, opts)
		wait := istiodReread
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !xds.IsRefusal(err) && (failures < istiodTries || !synced()):
			if synced() {
				failures++
			}
			log.V(1).Info("cannot read istiod's version yet; retrying", "error", err.Error())
			wait = istiodRetry
		default:
			if err != nil {
				log.Error(err, "cannot read istiod's version: generating for the newest Istio; set --istiod-version if istiod is older")
				v = model.Istiod{}
			}
			failures = 0
			if i.set(v) {
				log.Info("istiod version", "reports", v.Reported, "features", v.Version.String())
				changed()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
