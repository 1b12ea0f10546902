// Package benchmarks measures the cost of translation and of a push at 100 to
// 50,000 services (see BENCHMARKS.md).
package benchmarks

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/plan"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

var sizes = []int{100, 1000, 10000}

var base = generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}

func registry() generator.Registry {
	return plugin.Registry(plugin.Options{KafkaContribFilter: true})
}

// BenchmarkTranslate is a full translation from nothing, as at start-up or on a
// resync: building the services from the config and generating every one of them.
func BenchmarkTranslate(b *testing.B) {
	for _, shape := range []fixture.Shape{fixture.Dubbo, fixture.Mixed} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", shape, n), func(b *testing.B) {
				snap := fixture.Snapshot(shape, n)
				reg := registry()
				peak := watchPeak(b)
				for b.Loop() {
					// Each translation starts from a collected heap, as the first
					// push does: peak-MiB is then the peak of one translation, not of
					// one plus the garbage of the one before.
					b.StopTimer()
					runtime.GC()
					b.StartTimer()
					t, err := translate.NewTranslator(base, reg).Translate(snap)
					if err != nil {
						b.Fatal(err)
					}
					if len(t.Failed) > 0 || len(t.Filters) != 2*n || t.Generated != n {
						b.Fatalf("%d filters, %d generated, %d failed: %v", len(t.Filters), t.Generated, len(t.Failed), translate.SortedErrors(t.Failed))
					}
				}
				peak()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/service")
			})
		}
	}
}

// BenchmarkPushOneChange is the push after one VirtualService changed, as the
// controller makes it: the translator is told what changed (Update), and the plan
// looks at what the translation and the cluster changed. It fails unless exactly one
// service is generated and exactly one EnvoyFilter is written.
func BenchmarkPushOneChange(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("%s/%d", fixture.Dubbo, n), func(b *testing.B) {
			snap := fixture.Snapshot(fixture.Dubbo, n)
			vss := snap.VirtualServices
			tr, planner, cluster, t := firstPush(b, snap, n)
			// The informer's events of those writes: the next push compares every
			// spec once and finds it written. Then the steady state.
			if echo, err := planner.PlanChanges(t, t.Filters, cluster, cluster.take()); err != nil || !echo.Empty() {
				b.Fatalf("push after the first: %v, %d to create, %d to update, %d to delete", err, len(echo.Create), len(echo.Update), len(echo.Delete))
			}
			snap = nil // the translator holds the config now, as in the controller
			peak := watchPeak(b)
			i := 0
			for b.Loop() {
				i++
				vs := vss[i%n]
				// 21..99: never the fixture's 20, nor (n is no multiple of 79) the
				// weight this service got the last time round.
				vs.Spec = fixture.Split(vs.Spec.(*networking.VirtualService).GetHosts()[0], int32(21+i%79))
				vs.ResourceVersion = strconv.Itoa(i + 1)
				vss[i%n] = vs
				t, err := tr.Update(model.Delta{Objects: []model.Change{{Kind: model.VirtualServiceKind, Object: vs}}})
				if err != nil {
					b.Fatal(err)
				}
				changes, err := planner.PlanChanges(t, t.Filters, cluster, cluster.take())
				if err != nil {
					b.Fatal(err)
				}
				cluster.apply(changes)
				if writes := len(changes.Create) + len(changes.Update) + len(changes.Delete); t.Generated != 1 || writes != 1 {
					b.Fatalf("push after one change generated %d services and wrote %d EnvoyFilters, want 1 and 1", t.Generated, writes)
				}
			}
			peak()
			held(b, tr, cluster)
		})
	}
}

// BenchmarkResync is the controller's periodic safety net in a running
// controller: with the translation of every service and the cluster's copies held,
// it forgets every result, translates the whole config again and plans every
// filter. It fails unless every service is generated and nothing is written.
// peak-MiB is a running controller's peak at that size.
func BenchmarkResync(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("%s/%d", fixture.Dubbo, n), func(b *testing.B) {
			snap := fixture.Snapshot(fixture.Dubbo, n)
			tr, planner, cluster, _ := firstPush(b, snap, n)
			peak := watchPeak(b)
			for b.Loop() {
				tr.Reset()
				planner.Reset()
				t, err := tr.Translate(snap)
				if err != nil {
					b.Fatal(err)
				}
				changes := planner.Plan(t.Filters, cluster.filters, t.Failed)
				if t.Generated != n || !changes.Empty() {
					b.Fatalf("resync generated %d of %d services and wrote %d EnvoyFilters", t.Generated, n,
						len(changes.Create)+len(changes.Update)+len(changes.Delete))
				}
			}
			peak()
			held(b, tr, cluster)
		})
	}
}

// firstPush is a controller's first push of snap, n Dubbo services: a whole
// translation, and every service's two EnvoyFilters created in the cluster.
func firstPush(b *testing.B, snap *model.Snapshot, n int) (*translate.Translator, *plan.Planner, *cluster, *translate.Translation) {
	b.Helper()
	tr := translate.NewTranslator(base, registry())
	planner := &plan.Planner{}
	cluster := newCluster()
	t, err := tr.Translate(snap)
	if err != nil {
		b.Fatal(err)
	}
	first := planner.Plan(t.Filters, cluster.filters, t.Failed)
	if cluster.apply(first); len(first.Create) != 2*n {
		b.Fatalf("first push wrote %d, want %d", len(first.Create), 2*n)
	}
	return tr, planner, cluster, t
}

// cluster holds EnvoyFilters as the controller's informer cache does: what was
// written, trimmed to a digest of its spec (kube.TrimEnvoyFilter), each with a
// resource version, indexed by service; and, as the controller's informer events
// do, the keys written since the last plan.
type cluster struct {
	filters map[string]*model.EnvoyFilter
	owned   map[string]map[string]bool
	changed map[string]bool
	version int
}

func newCluster() *cluster {
	return &cluster{filters: map[string]*model.EnvoyFilter{}, owned: map[string]map[string]bool{}, changed: map[string]bool{}}
}

func (c *cluster) apply(changes plan.Changes) {
	for _, list := range [][]*model.EnvoyFilter{changes.Create, changes.Update} {
		for _, ef := range list {
			c.version++
			stored := ef.Trimmed()
			stored.ResourceVersion = strconv.Itoa(c.version)
			c.filters[ef.Key()] = stored
			owner := ef.Annotations[model.ServiceAnnotation]
			if c.owned[owner] == nil {
				c.owned[owner] = map[string]bool{}
			}
			c.owned[owner][ef.Key()] = true
			c.changed[ef.Key()] = true
		}
	}
	for _, ef := range changes.Delete {
		delete(c.filters, ef.Key())
		delete(c.owned[ef.Annotations[model.ServiceAnnotation]], ef.Key())
		c.changed[ef.Key()] = true
	}
}

func (c *cluster) take() map[string]bool {
	changed := c.changed
	c.changed = map[string]bool{}
	return changed
}

// Get implements plan.Cluster.
func (c *cluster) Get(key string) (*model.EnvoyFilter, error) { return c.filters[key], nil }

// Owned implements plan.Cluster.
func (c *cluster) Owned(service string) ([]*model.EnvoyFilter, error) {
	var out []*model.EnvoyFilter
	for key := range c.owned[service] {
		out = append(out, c.filters[key])
	}
	return out, nil
}

// heapProfileEnv names a directory: held writes a heap profile of each benchmark of a
// running controller there, as `go tool pprof` reads it.
const heapProfileEnv = "AERAKI_HEAP_PROFILES"

// held reports what a running controller holds once the benchmark is over, the
// translator's and the cluster's state, as live-MiB: the heap's live objects after
// a collection. The peak is about twice that with Go's default GC target.
func held(b *testing.B, state ...any) {
	b.Helper()
	runtime.GC()
	live := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(live)
	b.ReportMetric(float64(live[0].Value.Uint64())/(1<<20), "live-MiB")
	if dir := os.Getenv(heapProfileEnv); dir != "" {
		name := filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "-")+".heap")
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatalf("write %s: %v", name, err)
		}
	}
	runtime.KeepAlive(state)
}

// watchPeak samples the memory the Go runtime holds from the OS (what the process's
// resident size follows) while the benchmark runs, and reports its peak as
// peak-MiB. The input config is included: the controller holds it too.
func watchPeak(b *testing.B) func() {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b.ReportAllocs()
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			peak = max(peak, samples[0].Value.Uint64()-samples[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	b.ResetTimer()
	return func() {
		b.StopTimer()
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	}
}
