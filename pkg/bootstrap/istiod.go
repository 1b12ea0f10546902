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

// run reads istiod's version until ctx is done, calling changed when it changes (see
// nextIstiod).
func (i *istiodVersion) run(ctx context.Context, opts xds.Options, synced func() bool, changed func(), log logr.Logger) {
	failures := 0
	for {
		v, err := xds.ReadIstiod(ctx, opts)
		if ctx.Err() != nil {
			return
		}
		if err != nil && !xds.IsRefusal(err) {
			if synced() {
				failures++
			}
		} else {
			failures = 0
		}
		_, known := i.get()
		rec, ok, wait := nextIstiod(v, err, known, failures, synced())
		switch {
		case ok && err != nil:
			log.Error(err, "cannot read istiod's version: generating for the oldest Istio tested; set --istiod-version",
				"assumed", rec.Version.String())
		case err != nil:
			log.V(1).Info("cannot read istiod's version; retrying", "error", err.Error())
		}
		if ok && i.set(rec) {
			log.Info("istiod version", "reports", rec.Reported, "features", rec.Version.String())
			changed()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// nextIstiod decides what a read of istiod's version (v, err) makes of it: the istiod
// to record (ok false: nothing new to record) and when to read again. known says an
// istiod is recorded already; failures counts the reads that failed, other than by a
// refusal, while the config was synced (istiod up).
//   - An answer is recorded as it is; one without a version is the newest Istio (a
//     build by hand of recent Istio).
//   - A refusal (istiod's debug endpoints closed to us, as over plaintext unless
//     ENABLE_DEBUG_ENDPOINT_AUTH=false), and reads that keep failing with the config
//     synced before any answer, record model.UnsaidIstiod, the oldest Istio tested:
//     an istiod older than what is written for it cannot list any EnvoyFilter.
//   - Other failures are retried soon; an istiod recorded before stays (a restart is
//     no reason to generate less).
func nextIstiod(v model.Istiod, err error, known bool, failures int, synced bool) (model.Istiod, bool, time.Duration) {
	switch {
	case err == nil:
		return v, true, istiodReread
	case xds.IsRefusal(err):
		return model.UnsaidIstiod, true, istiodReread
	case !known && synced && failures >= istiodTries:
		return model.UnsaidIstiod, true, istiodReread
	}
	return model.Istiod{}, false, istiodRetry
}
