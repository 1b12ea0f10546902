package scale

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	clientalpha "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	// The fake sidecar: a pod of its own namespace, outside the harness's services.
	sidecarIP = "10.2.0.1"
	sidecarNS = "default"
	// istiodQuiet is how long istiod must have received no config update and pushed
	// nothing before it counts as idle. Its debounce waits for 100ms without events.
	istiodQuiet = time.Second
	dubboFilter = "envoy.filters.network.dubbo_proxy"
)

var (
	listenerType = "type.googleapis.com/" + string((&listener.Listener{}).ProtoReflect().Descriptor().FullName())
	clusterType  = "type.googleapis.com/" + string((&cluster.Cluster{}).ProtoReflect().Descriptor().FullName())
)

// sidecar is a fake sidecar that stays connected to istiod: one ADS stream watching
// listeners and clusters that acknowledges every response, so that istiod pushes to
// it as to a proxy. It keeps, from the last listeners it got, the harness's service
// listeners (VIP 240.240.x.y, port 20880): whether each carries dubbo_proxy, with
// which route weights, and since when.
type sidecar struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	// limit bounds a wait on istiod's pushes to it: longer the more services it gets.
	limit time.Duration

	mu        sync.Mutex
	responses map[string]int // by type URL
	services  map[string]serviceListener
	err       error
}

// serviceListener is what the sidecar holds for one service listener.
type serviceListener struct {
	dubbo   bool
	weights string    // routeWeights of its dubbo_proxy
	since   time.Time // when the response that brought this dubbo_proxy and weights arrived
}

// connectSidecar connects a sidecar to istiod's plaintext xDS, in a mesh of n
// services, until the test ends or stop is called.
func connectSidecar(t *testing.T, cp *controlplane.ControlPlane, n int) *sidecar {
	t.Helper()
	node, err := controlplane.SidecarNode(sidecarIP, sidecarNS, map[string]string{"app": "scale-client"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(cp.IstiodAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sidecar{conn: conn, cancel: cancel, done: make(chan struct{}), limit: timeout + time.Duration(n)*perService,
		responses: map[string]int{}, services: map[string]serviceListener{}}
	t.Cleanup(s.stop)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		close(s.done)
		t.Fatalf("sidecar: open ADS stream: %v", err)
	}
	for _, typ := range []string{clusterType, listenerType} {
		if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			close(s.done)
			t.Fatalf("sidecar: watch %s: %v", typ, err)
		}
	}
	go func() {
		defer close(s.done)
		s.setErr(s.run(ctx, stream))
	}()
	return s
}

// run receives, records and acknowledges responses until the stream ends.
func (s *sidecar) run(ctx context.Context, stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sidecar: receive: %w", err)
		}
		if err := s.record(resp, time.Now()); err != nil {
			return err
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sidecar: acknowledge: %w", err)
		}
	}
}

// record counts a response received at at and, for listeners, replaces the service
// listeners with those it carries (each response holds every listener), keeping the
// time of a listener whose filter and weights did not change.
func (s *sidecar) record(resp *discovery.DiscoveryResponse, at time.Time) error {
	var services map[string]serviceListener
	if resp.GetTypeUrl() == listenerType {
		var err error
		if services, err = serviceListeners(resp, at); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responses[resp.GetTypeUrl()]++
	if services == nil {
		return nil
	}
	for name, l := range services {
		if old, ok := s.services[name]; ok && old.dubbo == l.dubbo && old.weights == l.weights {
			services[name] = old
		}
	}
	s.services = services
	return nil
}

// serviceListeners returns the harness's service listeners of an LDS response, by
// name, as received at at.
func serviceListeners(resp *discovery.DiscoveryResponse, at time.Time) (map[string]serviceListener, error) {
	out := map[string]serviceListener{}
	for _, res := range resp.GetResources() {
		l := &listener.Listener{}
		if err := res.UnmarshalTo(l); err != nil {
			return nil, fmt.Errorf("sidecar: decode listener (%s): %w", res.GetTypeUrl(), err)
		}
		if !strings.HasPrefix(l.GetName(), "240.240.") || !strings.HasSuffix(l.GetName(), "_"+strconv.Itoa(dubboPort)) {
			continue
		}
		dp, err := listenerDubbo(l)
		if err != nil {
			return nil, fmt.Errorf("sidecar: listener %s: %w", l.GetName(), err)
		}
		out[l.GetName()] = serviceListener{dubbo: dp != nil, weights: routeWeights(dp), since: at}
	}
	return out, nil
}

func (s *sidecar) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// listeners returns, from the last listeners received, the number of service
// listeners and of those with dubbo_proxy; and the stream's error, if it ended.
func (s *sidecar) listeners() (services, dubbo int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.services {
		if l.dubbo {
			dubbo++
		}
	}
	return len(s.services), dubbo, s.err
}

// serviceListener returns what the last listeners received hold for the listener
// name; and the stream's error, if it ended.
func (s *sidecar) serviceListener(name string) (serviceListener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.services[name], s.err
}

// received returns the number of responses received, by xDS type (lds, cds).
func (s *sidecar) received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]int{"lds": s.responses[listenerType], "cds": s.responses[clusterType]}
}

// waitListeners waits until the last listeners received hold services service
// listeners, dubbo of them with dubbo_proxy.
func (s *sidecar) waitListeners(t *testing.T, services, dubbo int) {
	t.Helper()
	what := fmt.Sprintf("the sidecar's listeners: %d services, %d with dubbo_proxy", services, dubbo)
	waitFor(t, what, s.limit, func(context.Context) (bool, error) {
		gotServices, gotDubbo, err := s.listeners()
		return gotServices == services && gotDubbo == dubbo, err
	})
}

// stop ends the stream and closes the connection; istiod then has no proxy to push to.
func (s *sidecar) stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
		_ = s.conn.Close()
	})
}

// istiodMetrics scrapes istiod's /metrics.
func istiodMetrics(ctx context.Context, cp *controlplane.ControlPlane) (samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cp.IstiodMonitoringAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("istiod /metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("istiod /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("istiod /metrics: %s", resp.Status)
	}
	return parseMetrics(string(body))
}

// waitIstiodIdle waits until istiod has received no config update, triggered no push
// and pushed nothing for istiodQuiet, at most limit, and returns its metrics from then.
func waitIstiodIdle(t *testing.T, cp *controlplane.ControlPlane, limit time.Duration, what string) samples {
	t.Helper()
	var last samples
	var lastKey string
	var since time.Time
	waitFor(t, "istiod to be idle "+what, limit, func(ctx context.Context) (bool, error) {
		ss, err := istiodMetrics(ctx, cp)
		if err != nil {
			return false, err
		}
		key := fmt.Sprint(ss.sum("pilot_inbound_updates", nil), ss.sum("pilot_push_triggers", nil), ss.sum("pilot_xds_pushes", nil))
		if key != lastKey {
			lastKey, since = key, time.Now()
		}
		last = ss
		return time.Since(since) >= istiodQuiet, nil
	})
	return last
}

// pushTimes is istiod's pilot_xds_push_time between two scrapes, by xDS type.
type pushTimes map[string]pushTime

// pushTime is one xDS type's pushes between two scrapes. istiod's buckets are wide
// (10ms, 100ms, 1s, 3s, 5s, 10s, 20s, 30s), so p50 and p99 are given as the bound
// of the bucket they fall in: at most that long. The mean is exact.
type pushTime struct {
	Pushes      int     `json:"pushes"`
	SumSeconds  float64 `json:"sum_seconds"`
	MeanSeconds float64 `json:"mean_seconds"`
	// P50AtMost and P99AtMost are bucket bounds; above the last bound, that bound.
	P50AtMost float64 `json:"p50_at_most_seconds"`
	P99AtMost float64 `json:"p99_at_most_seconds"`
}

// istiodPushTimes returns, by xDS type, the pushes istiod recorded in
// pilot_xds_push_time between before and after, for the types in types.
func istiodPushTimes(before, after samples, types ...string) pushTimes {
	out := pushTimes{}
	for _, typ := range types {
		match := map[string]string{"type": typ}
		count := after.sum("pilot_xds_push_time_count", match) - before.sum("pilot_xds_push_time_count", match)
		sum := after.sum("pilot_xds_push_time_sum", match) - before.sum("pilot_xds_push_time_sum", match)
		pt := pushTime{Pushes: int(count), SumSeconds: sum}
		if count > 0 {
			b := bucketDeltas(before, after, match)
			pt.MeanSeconds = sum / count
			pt.P50AtMost = bucketBound(b, 0.50)
			pt.P99AtMost = bucketBound(b, 0.99)
		}
		out[typ] = pt
	}
	return out
}

// bucket is a cumulative histogram bucket: how many observations were at most le.
type bucket struct {
	le    float64
	count float64
}

// bucketDeltas returns pilot_xds_push_time's buckets for match between two scrapes,
// sorted by bound.
func bucketDeltas(before, after samples, match map[string]string) []bucket {
	b := before.by("pilot_xds_push_time_bucket", "le", match)
	var out []bucket
	for le, c := range after.by("pilot_xds_push_time_bucket", "le", match) {
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		out = append(out, bucket{le: bound, count: c - b[le]})
	}
	slices.SortFunc(out, func(x, y bucket) int { return cmp.Compare(x.le, y.le) })
	return out
}

// bucketBound returns the upper bound of the first bucket that holds the quantile q
// of the observations (nearest rank), or, if only +Inf does, the highest finite bound.
// Without observations it is 0.
func bucketBound(bs []bucket, q float64) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0
	}
	rank := math.Ceil(q * bs[len(bs)-1].count)
	finite := 0.0
	for _, b := range bs {
		if math.IsInf(b.le, 1) {
			break
		}
		if b.count >= rank {
			return b.le
		}
		finite = b.le
	}
	return finite
}

// formatPushTime is one xDS type's pushes on one line.
func formatPushTime(p pushTime) string {
	d := func(s float64) string {
		return (time.Duration(s * float64(time.Second))).Round(10 * time.Microsecond).String()
	}
	return fmt.Sprintf("%d pushes, total %s, mean %s, p50 <= %s, p99 <= %s (buckets)",
		p.Pushes, d(p.SumSeconds), d(p.MeanSeconds), d(p.P50AtMost), d(p.P99AtMost))
}

// istiodPhase is what istiod pushed to the sidecar during one phase.
type istiodPhase struct {
	// Seconds runs from the phase's start to the sidecar holding its final listeners.
	Seconds  float64        `json:"seconds"`
	PushTime pushTimes      `json:"push_time"`
	Received map[string]int `json:"sidecar_responses"`
}

// istiodWindow is a phase being measured.
type istiodWindow struct {
	before   samples
	received map[string]int
	begin    time.Time
}

// startIstiod waits until istiod is idle and starts measuring a phase.
func startIstiod(t *testing.T, cp *controlplane.ControlPlane, sc *sidecar, what string) istiodWindow {
	t.Helper()
	before := waitIstiodIdle(t, cp, sc.limit, "before "+what)
	return istiodWindow{before: before, received: sc.received(), begin: time.Now()}
}

// end ends the phase, once the sidecar holds the phase's final listeners: it waits
// until istiod is idle again and returns what istiod pushed in between.
func (w istiodWindow) end(t *testing.T, cp *controlplane.ControlPlane, sc *sidecar, what string) istiodPhase {
	t.Helper()
	took := time.Since(w.begin)
	after := waitIstiodIdle(t, cp, sc.limit, "after "+what)
	received := sc.received()
	for typ, n := range w.received {
		received[typ] -= n
	}
	return istiodPhase{Seconds: took.Seconds(), PushTime: istiodPushTimes(w.before, after, "lds", "cds"), Received: received}
}

// istiodBaseline measures the phase of the ServiceEntries again without our
// EnvoyFilters. With the controller stopped, it deletes the EnvoyFilters and every
// ServiceEntry, waits until the sidecar has no service listener and istiod is idle,
// then creates the same ServiceEntries as before, until the sidecar has every service
// listener (none with dubbo_proxy) and istiod is idle.
func istiodBaseline(t *testing.T, cp *controlplane.ControlPlane, sc *sidecar, istio istioclient.Interface, n int) istiodPhase {
	t.Helper()
	ctx := t.Context()
	ours := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{model.ManagedByLabel: model.ManagedByValue}).String()}
	for _, ns := range []string{rootNS, appNS} {
		if err := istio.NetworkingV1alpha3().EnvoyFilters(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, ours); err != nil {
			t.Fatalf("baseline: delete the EnvoyFilters in %s: %v", ns, err)
		}
	}
	if err := istio.NetworkingV1().ServiceEntries(appNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("baseline: delete the ServiceEntries: %v", err)
	}
	sc.waitListeners(t, 0, 0)
	w := startIstiod(t, cp, sc, "the ServiceEntries without EnvoyFilters")
	_, created := createServiceEntries(t, istio, n)
	sc.waitListeners(t, n, 0)
	phase := w.end(t, cp, sc, "the ServiceEntries without EnvoyFilters")
	t.Logf("baseline: %d ServiceEntries created again in %s, without EnvoyFilters", n, created.Round(time.Millisecond))
	return phase
}

// istiodShared measures istiod while the ServiceEntries are created once more, with
// the EnvoyFilters of the shared shape already in place (created directly: the
// controller is stopped, and istiod's work depends on the filters, not on who wrote
// them): one client filter for port 20880, the route server's cluster, and an
// inbound filter per service. They are removed afterwards.
func istiodShared(t *testing.T, cp *controlplane.ControlPlane, sc *sidecar, istio istioclient.Interface, n int) istiodPhase {
	t.Helper()
	ctx := t.Context()
	if err := istio.NetworkingV1().ServiceEntries(appNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("shared: delete the ServiceEntries: %v", err)
	}
	sc.waitListeners(t, 0, 0)
	efs := sharedFilters(t, n)
	if err := inParallel(len(efs), workers, func(i int) error {
		_, err := istio.NetworkingV1alpha3().EnvoyFilters(efs[i].Namespace).Create(ctx, efs[i], metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("shared: creating the EnvoyFilters: %v", err)
	}
	w := startIstiod(t, cp, sc, "the ServiceEntries with the shared EnvoyFilters")
	_, created := createServiceEntries(t, istio, n)
	sc.waitListeners(t, n, n)
	phase := w.end(t, cp, sc, "the ServiceEntries with the shared EnvoyFilters")
	t.Logf("shared: %d ServiceEntries created again in %s, with %d EnvoyFilters of the shared shape", n, created.Round(time.Millisecond), len(efs))
	for _, ef := range efs {
		if err := istio.NetworkingV1alpha3().EnvoyFilters(ef.Namespace).Delete(ctx, ef.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("shared: deleting EnvoyFilter %s/%s: %v", ef.Namespace, ef.Name, err)
		}
	}
	return phase
}

// sharedFilters translates the harness's n services as a controller serving routes
// does, and fails unless the port is shared: n inbound filters, the port's, the route
// server's cluster.
func sharedFilters(t *testing.T, n int) []*clientalpha.EnvoyFilter {
	t.Helper()
	snap := &model.Snapshot{DomainSuffix: "cluster.local"}
	for i := range n {
		se := serviceEntry(name(i), host(i), vip(i), map[string]string{"interface": fmt.Sprintf("org.example.Service%d", i)})
		vs, dr := virtualService(i), destinationRule(i)
		snap.ServiceEntries = append(snap.ServiceEntries, model.Object{Name: se.Name, Namespace: se.Namespace, Annotations: se.Annotations, Spec: &se.Spec})
		snap.VirtualServices = append(snap.VirtualServices, model.Object{Name: vs.Name, Namespace: vs.Namespace, Spec: &vs.Spec})
		snap.DestinationRules = append(snap.DestinationRules, model.Object{Name: dr.Name, Namespace: dr.Namespace, Spec: &dr.Spec})
	}
	ctx := generator.Context{RootNamespace: rootNS, DomainSuffix: "cluster.local", RouteDiscovery: generatortest.RouteDiscovery}
	tr, err := translate.Translate(ctx, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Failed) > 0 || len(tr.Filters) != n+2 || len(tr.Routes) != 1 {
		t.Fatalf("shared shape: %d EnvoyFilters and %d route configurations for %d services, failed %v", len(tr.Filters), len(tr.Routes), n, translate.SortedErrors(tr.Failed))
	}
	var out []*clientalpha.EnvoyFilter
	for _, ef := range translate.SortedFilters(tr.Filters) {
		obj := &clientalpha.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: ef.Name, Namespace: ef.Namespace, Labels: ef.Labels, Annotations: ef.Annotations}}
		proto.Merge(&obj.Spec, ef.Spec)
		out = append(out, obj)
	}
	return out
}

// checkPushed fails the test unless istiod pushed listeners and clusters in a phase.
func checkPushed(t *testing.T, p istiodPhase, which string) {
	t.Helper()
	for _, typ := range []string{"lds", "cds"} {
		if p.PushTime[typ].Pushes == 0 || p.Received[typ] == 0 {
			t.Errorf("%s: istiod recorded %d %s pushes and the sidecar received %d, want some", which, p.PushTime[typ].Pushes, typ, p.Received[typ])
		}
	}
}

func TestIstiodPushTimes(t *testing.T) {
	scrape := func(text string) samples {
		t.Helper()
		ss, err := parseMetrics(text)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	before := scrape(`pilot_xds_push_time_bucket{type="lds",le="0.01"} 1
pilot_xds_push_time_bucket{type="lds",le="0.1"} 1
pilot_xds_push_time_bucket{type="lds",le="1"} 1
pilot_xds_push_time_bucket{type="lds",le="+Inf"} 1
pilot_xds_push_time_sum{type="lds"} 0.005
pilot_xds_push_time_count{type="lds"} 1
`)
	// Since before: 100 lds pushes, 98 of them at most 10ms, one at most 100ms and
	// one at most 1s; no cds push.
	after := scrape(`pilot_xds_push_time_bucket{type="lds",le="+Inf"} 101
pilot_xds_push_time_bucket{type="lds",le="1"} 101
pilot_xds_push_time_bucket{type="lds",le="0.1"} 100
pilot_xds_push_time_bucket{type="lds",le="0.01"} 99
pilot_xds_push_time_sum{type="lds"} 1.005
pilot_xds_push_time_count{type="lds"} 101
pilot_xds_push_time_bucket{type="eds",le="+Inf"} 7
`)
	got := istiodPushTimes(before, after, "lds", "cds")
	want := pushTimes{
		"lds": {Pushes: 100, SumSeconds: 1, MeanSeconds: 0.01, P50AtMost: 0.01, P99AtMost: 0.1},
		"cds": {},
	}
	const eps = 1e-9
	for typ, w := range want {
		g := got[typ]
		if g.Pushes != w.Pushes || math.Abs(g.SumSeconds-w.SumSeconds) > eps || math.Abs(g.MeanSeconds-w.MeanSeconds) > eps ||
			g.P50AtMost != w.P50AtMost || g.P99AtMost != w.P99AtMost {
			t.Errorf("%s: got %+v, want %+v", typ, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("types %v, want lds and cds", slices.Sorted(maps.Keys(got)))
	}
	// Only +Inf holds the quantile: the highest finite bound.
	inf := []bucket{{le: 0.01, count: 0}, {le: 30, count: 0}, {le: math.Inf(1), count: 2}}
	if got := bucketBound(inf, 0.5); got != 30 {
		t.Errorf("bucketBound above the last bound = %v, want 30", got)
	}
}
