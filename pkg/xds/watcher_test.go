package xds

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pilot/pkg/features"
	istioxds "istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	istiomesh "istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/test"
	"istio.io/istio/tests/util/leak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"aeraki.io/aeraki/pkg/model"
)

// TestMain fails the package if goroutines outlive the tests: the watcher must stop
// its xDS client and store completely when Run returns.
func TestMain(m *testing.M) {
	leak.CheckMain(m)
}

const (
	seDubboA = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: dubbo-a
  namespace: default
spec:
  hosts: [dubbo-a.default.svc.cluster.local]
  addresses: [240.0.0.1]
  ports:
  - {number: 20880, name: tcp-dubbo, protocol: TCP}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
`
	seDubboGone = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: dubbo-gone
  namespace: default
spec:
  hosts: [dubbo-gone.default.svc.cluster.local]
  addresses: [240.0.0.9]
  ports:
  - {number: 20880, name: tcp-dubbo, protocol: TCP}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.0.0.9}]
`
	sePlain = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: plain
  namespace: default
spec:
  hosts: [plain.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
`
)

// dubboService is a Kubernetes Service that istiod shows as synthetic-dubbo-svc.
func dubboService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "dubbo-svc", Namespace: "default",
			Annotations: map[string]string{"example.com/note": "does istiod pass this on?"},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{{
				Name: "tcp-dubbo", Port: 20880, TargetPort: intstr.FromInt32(20881), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

func TestWatcherAgainstIstiod(t *testing.T) {
	start := time.Now()
	// Test istiod serves the api generator on plaintext without an identity, as
	// istiod does with ENABLE_XDS_API_GENERATOR_AUTH=false. Read when the generator
	// is built, so set before any server starts.
	test.SetForTest(t, &features.EnableXDSAPIGeneratorAuth, false)

	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("watcher log:\n" + logs.String())
		}
	})

	// A port istiod will listen on once the watcher is already trying it.
	addr := freeAddress(t)
	rec := &recorder{}
	w := NewWatcher(Options{
		Address:        addr,
		Security:       Security{Plaintext: true},
		InitialBackoff: 20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Logger:         logs.logger(),
	}, rec.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var stopOnce sync.Once
	stopWatcher := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil after cancel", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30s of cancel")
			}
		})
	}

	// istiod is not up: the first stream fails and Run keeps retrying.
	eventually(t, "a failed first connection", func() bool { r, _ := w.LastError(); return r == ReasonUnreachable })
	if w.HasSynced() || w.Connected() {
		t.Fatal("synced or connected without istiod")
	}
	if _, msg := w.LastError(); !strings.Contains(msg, addr) {
		t.Errorf("LastError message %q does not name the address", msg)
	}

	istiod := startIstiod(t, addr, seDubboA+"---\n"+seDubboGone+"---\n"+sePlain, dubboService())
	// Registered after istiod's cleanup, so it runs first: the watcher stops before
	// the server does, as in a normal shutdown.
	t.Cleanup(stopWatcher)

	// Initial sync.
	eventually(t, "sync", func() bool { return w.HasSynced() && w.Connected() })
	if reason, msg := w.LastError(); reason != "" {
		t.Errorf("LastError = %s, %q once connected", reason, msg)
	}
	eventually(t, "events for the initial ServiceEntries", func() bool {
		return rec.count(seEvent("dubbo-a")) == 1 && rec.count(seEvent("dubbo-gone")) == 1 &&
			rec.count(seEvent("synthetic-dubbo-svc")) == 1
	})
	ses, _, _ := w.Snapshot()
	for _, name := range []string{"dubbo-a", "dubbo-gone", "plain", "synthetic-dubbo-svc"} {
		if find(ses, name) == nil {
			t.Errorf("initial snapshot lacks ServiceEntry default/%s; has %v", name, names(ses))
		}
	}
	t.Logf("synced %v after start", time.Since(start))
	checkSynthetic(t, find(ses, "synthetic-dubbo-svc"))

	store := istiod.server.Store()

	// ServiceEntry add.
	if _, err := store.Create(config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.ServiceEntry, Name: "dubbo-b", Namespace: "default"},
		Spec: &networking.ServiceEntry{
			Hosts:      []string{"dubbo-b.default.svc.cluster.local"},
			Addresses:  []string{"240.0.0.2"},
			Ports:      []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			Location:   networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC,
			Endpoints:  []*networking.WorkloadEntry{{Address: "10.0.0.2"}},
		},
	}); err != nil {
		t.Fatalf("creating ServiceEntry dubbo-b: %v", err)
	}
	eventually(t, "ServiceEntry dubbo-b added", func() bool {
		return rec.count(seEvent("dubbo-b")) == 1 && inSnapshot(w, gvk.ServiceEntry, "dubbo-b")
	})

	// ServiceEntry update: the port is renamed away from tcp-dubbo, which matters.
	updateSE(t, istiod, "dubbo-b", func(se *networking.ServiceEntry) { se.Ports[0].Name = "tcp" })
	eventually(t, "ServiceEntry dubbo-b renamed away from tcp-dubbo", func() bool {
		ses, _, _ := w.Snapshot()
		c := find(ses, "dubbo-b")
		return rec.count(seEvent("dubbo-b")) == 2 && c != nil && c.Spec.(*networking.ServiceEntry).GetPorts()[0].GetName() == "tcp"
	})

	// VirtualServices: one for an unrelated host (no event, checked at the end, when
	// every later event has been seen), one with a short host resolved in its
	// namespace to dubbo-a.
	createVS(t, istiod, "unrelated", "unrelated.example.com")
	createVS(t, istiod, "route-a", "dubbo-a")
	eventually(t, "VirtualService route-a added", func() bool {
		return rec.count(vsEvent("route-a")) == 1 && inSnapshot(w, gvk.VirtualService, "route-a") &&
			inSnapshot(w, gvk.VirtualService, "unrelated")
	})
	vsCfg := store.Get(gvk.VirtualService, "route-a", "default").DeepCopy()
	vsCfg.Spec.(*networking.VirtualService).Tcp = []*networking.TCPRoute{{
		Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "dubbo-a"}}},
	}}
	if _, err := store.Update(vsCfg); err != nil {
		t.Fatalf("updating VirtualService route-a: %v", err)
	}
	eventually(t, "VirtualService route-a updated", func() bool { return rec.count(vsEvent("route-a")) == 2 })
	if err := store.Delete(gvk.VirtualService, "route-a", "default", nil); err != nil {
		t.Fatalf("deleting VirtualService route-a: %v", err)
	}
	eventually(t, "VirtualService route-a deleted", func() bool {
		return rec.count(vsEvent("route-a")) == 3 && !inSnapshot(w, gvk.VirtualService, "route-a")
	})

	// A DestinationRule for dubbo-a; it is still there when istiod goes away.
	if _, err := store.Create(config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.DestinationRule, Name: "dubbo-a", Namespace: "default"},
		Spec: &networking.DestinationRule{
			Host:    "dubbo-a.default.svc.cluster.local",
			Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
		},
	}); err != nil {
		t.Fatalf("creating DestinationRule dubbo-a: %v", err)
	}
	eventually(t, "DestinationRule dubbo-a added", func() bool {
		return rec.count(drEvent("dubbo-a")) == 1 && inSnapshot(w, gvk.DestinationRule, "dubbo-a")
	})

	// ServiceEntry delete (created first and seen, so the two cannot merge in one push).
	createSE(t, istiod, "dubbo-c", "dubbo-c.default.svc.cluster.local", "tcp-thrift")
	eventually(t, "ServiceEntry dubbo-c added", func() bool { return rec.count(seEvent("dubbo-c")) == 1 })
	if err := store.Delete(gvk.ServiceEntry, "dubbo-c", "default", nil); err != nil {
		t.Fatalf("deleting ServiceEntry dubbo-c: %v", err)
	}
	eventually(t, "ServiceEntry dubbo-c deleted", func() bool {
		return rec.count(seEvent("dubbo-c")) == 2 && !inSnapshot(w, gvk.ServiceEntry, "dubbo-c")
	})

	// istiod goes away; when it comes back on the same port, dubbo-gone has been
	// deleted meanwhile (and so have everything created above).
	istiod.stop()
	eventually(t, "disconnect", func() bool { return !w.Connected() })
	if !inSnapshot(w, gvk.ServiceEntry, "dubbo-gone") {
		t.Error("the store lost dubbo-gone while istiod was away")
	}
	restart := time.Now()
	startIstiod(t, addr, seDubboA+"---\n"+sePlain, dubboService())
	eventually(t, "resync after the restart", func() bool {
		return w.Connected() && rec.count(seEvent("dubbo-gone")) == 2 && !inSnapshot(w, gvk.ServiceEntry, "dubbo-gone") &&
			rec.count(drEvent("dubbo-a")) == 2 && !inSnapshot(w, gvk.DestinationRule, "dubbo-a")
	})
	t.Logf("resynced %v after the restart", time.Since(restart))
	if !inSnapshot(w, gvk.ServiceEntry, "dubbo-a") || !inSnapshot(w, gvk.ServiceEntry, "synthetic-dubbo-svc") {
		t.Errorf("after the restart the snapshot lacks dubbo-a or synthetic-dubbo-svc")
	}
	if inSnapshot(w, gvk.ServiceEntry, "dubbo-b") || inSnapshot(w, gvk.VirtualService, "unrelated") {
		t.Errorf("objects of the first istiod survive the restart")
	}

	stopWatcher()
	if w.Connected() {
		t.Error("Connected after Run returned")
	}

	// What must not have produced events, now that every later one has been seen.
	// dubbo-a and synthetic-dubbo-svc were rewritten in the store on the resync (new
	// resource versions, equal specs), and dubbo-b's deletion came after its port
	// had been renamed away.
	for _, c := range []struct {
		e    Event
		want int
	}{
		{seEvent("dubbo-a"), 1},
		{seEvent("synthetic-dubbo-svc"), 1},
		{seEvent("dubbo-b"), 2},
		{seEvent("plain"), 0},
		{vsEvent("unrelated"), 0},
	} {
		if got := rec.count(c.e); got != c.want {
			t.Errorf("%v: %d events, want %d", c.e, got, c.want)
		}
	}
	t.Logf("events: %v", rec.all())
	t.Logf("whole test %v", time.Since(start))
}

// TestWatcherReportsAuthGate: Istio 1.31 refuses an unauthenticated api-generator
// client on plaintext; the watcher must say so in its log and LastError, not just
// stay unsynced.
// The watcher takes the export defaults from istiod's mesh config, and tells of
// them as a change.
func TestWatcherReadsMeshExportDefaults(t *testing.T) {
	test.SetForTest(t, &features.EnableXDSAPIGeneratorAuth, false)
	addr := freeAddress(t)
	mesh := istiomesh.DefaultMeshConfig()
	mesh.DefaultServiceExportTo = []string{"*"}
	mesh.DefaultVirtualServiceExportTo = []string{"."}
	mesh.DefaultDestinationRuleExportTo = []string{"."}
	f := &fakeIstiod{T: t}
	t.Cleanup(f.stop)
	f.server = istioxds.NewFakeDiscoveryServer(f, istioxds.FakeOptions{
		ConfigString:    seDubboA,
		MeshConfig:      mesh,
		ListenerBuilder: func() (net.Listener, error) { return net.Listen("tcp", addr) },
	})
	rec := &recorder{}
	w := NewWatcher(Options{
		Address: addr, Security: Security{Plaintext: true},
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: (&logBuffer{}).logger(),
	}, rec.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	eventually(t, "synced", w.HasSynced)
	eventually(t, "the mesh's export defaults", func() bool { return rec.count(Event{Kind: KindMeshConfig}) == 1 })
	want := model.ExportDefaults{ServiceEntry: []string{"*"}, VirtualService: []string{"."}, DestinationRule: []string{"."}}
	if got := w.ExportDefaults(); !cmp.Equal(got, want) {
		t.Errorf("ExportDefaults = %+v, want %+v", got, want)
	}
}

func TestWatcherReportsAuthGate(t *testing.T) {
	test.SetForTest(t, &features.EnableXDSAPIGeneratorAuth, true)
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("watcher log:\n" + logs.String())
		}
	})
	addr := freeAddress(t)
	startIstiod(t, addr, seDubboA)
	w := NewWatcher(Options{
		Address: addr, Security: Security{Plaintext: true},
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: logs.logger(),
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	eventually(t, "the refusal in the log", func() bool { return logs.contains(`"reason"="unauthenticated"`) })
	if logs.count(`"reason"="unauthenticated"`, "ENABLE_XDS_API_GENERATOR_AUTH=false") != 1 {
		t.Error("the log does not say once how to fix it")
	}
	if reason, msg := w.LastError(); reason != ReasonUnauthenticated || !strings.Contains(msg, "ENABLE_XDS_API_GENERATOR_AUTH=false") {
		t.Errorf("LastError = %s, %q", reason, msg)
	}
	if w.HasSynced() || w.Connected() {
		t.Error("synced or connected although istiod refused the stream")
	}
	if ses, _, _ := w.Snapshot(); len(ses) != 0 {
		t.Errorf("ServiceEntries despite the refusal: %v", names(ses))
	}
}

// checkSynthetic pins down what istiod puts into the ServiceEntry it derives from a
// Kubernetes Service; model.BuildServices relies on it (and reads annotations and
// target ports from the Service itself).
func checkSynthetic(t *testing.T, c *model.Object) {
	t.Helper()
	if c == nil {
		t.Error("no synthetic-dubbo-svc")
		return
	}
	spec := c.Spec.(*networking.ServiceEntry)
	t.Logf("synthetic ServiceEntry: annotations=%v resourceVersion=%q spec=%v", c.Annotations, c.ResourceVersion, spec)
	if !slices.Equal(spec.GetHosts(), []string{"dubbo-svc.default.svc.cluster.local"}) {
		t.Errorf("hosts = %v", spec.GetHosts())
	}
	if !slices.Contains(spec.GetAddresses(), "10.96.0.10") {
		t.Errorf("addresses = %v, want the ClusterIP", spec.GetAddresses())
	}
	if len(spec.GetPorts()) != 1 || spec.GetPorts()[0].GetName() != "tcp-dubbo" || spec.GetPorts()[0].GetNumber() != 20880 {
		t.Errorf("ports = %v", spec.GetPorts())
	}
	if tp := spec.GetPorts()[0].GetTargetPort(); tp != 0 {
		t.Errorf("istiod now sends target port %d: model.BuildServices could use it", tp)
	}
	if len(c.Annotations) != 0 {
		t.Errorf("istiod now sends the Service's annotations %v: model.BuildServices could use them", c.Annotations)
	}
}

// fakeIstiod is an in-process istiod on a real TCP port. It keeps the cleanups the
// fake server registers, so the test can stop it midway and start another one on the
// same port.
type fakeIstiod struct {
	*testing.T
	server   *istioxds.FakeDiscoveryServer
	mu       sync.Mutex
	cleanups []func()
}

func startIstiod(t *testing.T, addr, configYAML string, kubeObjects ...runtime.Object) *fakeIstiod {
	t.Helper()
	return startIstiodOn(t, func() (net.Listener, error) { return net.Listen("tcp", addr) }, configYAML, kubeObjects...)
}

// startIstiodOn starts an istiod that serves on the listener listen returns.
func startIstiodOn(t *testing.T, listen func() (net.Listener, error), configYAML string, kubeObjects ...runtime.Object) *fakeIstiod {
	t.Helper()
	f := &fakeIstiod{T: t}
	t.Cleanup(f.stop)
	f.server = istioxds.NewFakeDiscoveryServer(f, istioxds.FakeOptions{
		ConfigString:      configYAML,
		KubernetesObjects: kubeObjects,
		ListenerBuilder:   listen,
	})
	return f
}

func (f *fakeIstiod) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// stop runs the server's cleanups, last first, as testing would. Idempotent.
func (f *fakeIstiod) stop() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func createSE(t *testing.T, s *fakeIstiod, name, h, portName string) {
	t.Helper()
	if _, err := s.server.Store().Create(config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.ServiceEntry, Name: name, Namespace: "default"},
		Spec: &networking.ServiceEntry{
			Hosts:      []string{h},
			Ports:      []*networking.ServicePort{{Number: 9090, Name: portName, Protocol: "TCP"}},
			Resolution: networking.ServiceEntry_DNS,
		},
	}); err != nil {
		t.Fatalf("creating ServiceEntry %s: %v", name, err)
	}
}

func updateSE(t *testing.T, s *fakeIstiod, name string, f func(*networking.ServiceEntry)) {
	t.Helper()
	cur := s.server.Store().Get(gvk.ServiceEntry, name, "default")
	if cur == nil {
		t.Fatalf("ServiceEntry %s not in the server's store", name)
	}
	c := cur.DeepCopy()
	f(c.Spec.(*networking.ServiceEntry))
	if _, err := s.server.Store().Update(c); err != nil {
		t.Fatalf("updating ServiceEntry %s: %v", name, err)
	}
}

func createVS(t *testing.T, s *fakeIstiod, name string, hosts ...string) {
	t.Helper()
	if _, err := s.server.Store().Create(config.Config{
		Meta: config.Meta{GroupVersionKind: gvk.VirtualService, Name: name, Namespace: "default"},
		Spec: &networking.VirtualService{Hosts: hosts},
	}); err != nil {
		t.Fatalf("creating VirtualService %s: %v", name, err)
	}
}

func seEvent(name string) Event { return Event{KindServiceEntry, "default", name} }
func vsEvent(name string) Event { return Event{KindVirtualService, "default", name} }
func drEvent(name string) Event { return Event{KindDestinationRule, "default", name} }

// recorder keeps every Event the watcher emits.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) count(e Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.events {
		if x == e {
			n++
		}
	}
	return n
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// eventually polls cond until it holds, failing the test after 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func inSnapshot(w *Watcher, k config.GroupVersionKind, name string) bool {
	ses, vss, drs := w.Snapshot()
	list := map[config.GroupVersionKind][]model.Object{gvk.ServiceEntry: ses, gvk.VirtualService: vss, gvk.DestinationRule: drs}[k]
	return find(list, name) != nil
}

// find returns the object of the default namespace with the name.
func find(cs []model.Object, name string) *model.Object {
	for i := range cs {
		if cs[i].Namespace == "default" && cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func names(cs []model.Object) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Namespace+"/"+c.Name)
	}
	return out
}

// logBuffer collects the watcher's log, shown only when the test fails: testing's
// own log may not be written to once the test has returned, and the store's event
// goroutines can outlive it by a moment.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, time.Now().Format("15:04:05.000")+" "+prefix+" "+args)
	}, funcr.Options{Verbosity: 2})
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// count returns how many lines contain every one of parts.
func (b *logBuffer) count(parts ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(l, p) }) {
			n++
		}
	}
	return n
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
