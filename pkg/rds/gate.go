package rds

import (
	"context"
	"errors"
	"fmt"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/go-logr/logr"
)

// oneNode puts every client in the one group of go-control-plane's snapshot cache,
// allNodes: all sidecars are served the same resources, each picks the names it
// asks for.
type oneNode struct{}

const allNodes = ""

func (oneNode) ID(*core.Node) string { return allNodes }

// gate is go-control-plane's snapshot cache (which answers watches, both state of
// the world and delta, from a snapshot) behind a gate that holds every watch of a
// type until that type is first set. The cache alone would answer a type missing
// from the snapshot with nothing as soon as the request's version differs from ""
// (a sidecar reconnecting with the version it had), and a delta client with the
// removal of every resource it says it has.
type gate struct {
	log   logr.Logger
	inner cache.SnapshotCache

	mu   sync.Mutex
	snap *snapshot
	// held are the watches of types not set yet, by type URL.
	held map[string]map[*heldWatch]struct{}
}

var _ cache.Cache = (*gate)(nil)

func newGate(log logr.Logger) *gate {
	// ads false: the cache must answer a request that names only some of the
	// resources (each sidecar asks for its own), not wait for all of them.
	return &gate{
		log:   log,
		inner: cache.NewSnapshotCache(false, oneNode{}, cacheLogger{log: log.WithName("cache")}),
		snap:  &snapshot{},
		held:  map[string]map[*heldWatch]struct{}{},
	}
}

// heldWatch is a watch waiting for the first set of its type.
type heldWatch struct {
	// create makes the watch in the cache (state of the world or delta).
	create func() (func(), error)
	// cancel is the cache's cancel once the watch was passed on; done once the
	// server cancelled it.
	cancel func()
	done   bool
}

// set makes set the content of typeURL, answers the open watches that it changes,
// and passes on the watches held for the type. It returns the previous version,
// "" if the type was not set.
func (g *gate) set(typeURL string, set *resourceSet) (previous string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	previous = g.snap.GetVersion(typeURL)
	g.snap = g.snap.with(typeURL, set)
	// SetSnapshot does not block, so it needs no context: a state-of-the-world
	// watch has a buffered channel of its own, answered at most once, and a delta
	// stream's shared channel has room for twenty responses and gets at most two
	// per type the stream watches.
	if err := g.inner.SetSnapshot(context.Background(), allNodes, g.snap); err != nil {
		return previous, fmt.Errorf("answering the open watches: %w", err)
	}
	var errs []error
	for w := range g.held[typeURL] {
		cancel, err := w.create()
		if err != nil {
			// Not seen with the snapshot cache; the stream would wait until its
			// client asks again.
			errs = append(errs, err)
			continue
		}
		w.cancel = cancel
	}
	delete(g.held, typeURL)
	if err := errors.Join(errs...); err != nil {
		return previous, fmt.Errorf("passing on the watches held for %s: %w", typeURL, err)
	}
	return previous, nil
}

// version returns typeURL's version and whether it was set.
func (g *gate) version(typeURL string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	set, ok := g.snap.set(typeURL)
	if !ok {
		return "", false
	}
	return set.version, true
}

// heldCount returns how many watches of typeURL wait for its first set.
func (g *gate) heldCount(typeURL string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held[typeURL])
}

// CreateWatch passes a state-of-the-world watch to the cache, or holds it until
// its type is set.
func (g *gate) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	create := func() (func(), error) { return g.inner.CreateWatch(req, sub, ch) }
	return g.watch(req.GetTypeUrl(), &heldWatch{create: create})
}

// CreateDeltaWatch passes a delta watch to the cache, or holds it until its type
// is set.
func (g *gate) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	create := func() (func(), error) { return g.inner.CreateDeltaWatch(req, sub, ch) }
	return g.watch(req.GetTypeUrl(), &heldWatch{create: create})
}

// watch creates w now if its type is set, or holds it. The lock is held while the
// cache creates it so that a set cannot slip between the check and the creation.
func (g *gate) watch(typeURL string, w *heldWatch) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.snap.set(typeURL); ok {
		return w.create()
	}
	if g.held[typeURL] == nil {
		g.held[typeURL] = map[*heldWatch]struct{}{}
	}
	g.held[typeURL][w] = struct{}{}
	g.log.V(2).Info("holding a watch until the type is set", "typeURL", typeURL)
	return func() { g.cancel(typeURL, w) }, nil
}

// cancel ends a watch, held or passed on; the server may call it more than once.
// Taking the lock orders it after a set that is passing the watch on: the cache's
// answer is in the channel before the server closes it.
func (g *gate) cancel(typeURL string, w *heldWatch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	delete(g.held[typeURL], w)
	if len(g.held[typeURL]) == 0 {
		delete(g.held, typeURL)
	}
	if w.cancel != nil {
		w.cancel()
	}
}

// Fetch is the REST protocol, which Serve does not offer.
func (g *gate) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not served, only ADS streams")
}
