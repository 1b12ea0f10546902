package translate_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/plan"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

var (
	translatorContext = generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}
	// sharedContext has a route server: Dubbo ports are shared.
	sharedContext = generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local", RouteDiscovery: generatortest.RouteDiscovery}
)

// mesh is a mutable config for the translator tests: the mixed fixture plus a
// Secret that a RedisService's auth reads, Kubernetes Services behind synthetic
// entries, and the apiserver's state of ServiceEntries. Every change is recorded
// in delta, as the controller's sources record them.
type mesh struct {
	snap    *model.Snapshot
	secrets map[string]*model.Secret
	kube    map[string]*model.KubeService
	states  map[string]*model.ServiceEntryState
	version int
	delta   model.Delta
}

// kubeServices is how many Kubernetes Services the mesh has, each istiod's
// synthetic entry synthetic-kube-<i>; allocated how many ServiceEntries without
// addresses, whose addresses Istio allocates (auto-<i>).
const kubeServices, allocated = 3, 3

func newMesh(n int) *mesh {
	m := &mesh{snap: fixture.Snapshot(fixture.Mixed, n), secrets: map[string]*model.Secret{},
		kube: map[string]*model.KubeService{}, states: map[string]*model.ServiceEntryState{}}
	m.snap.Secret = func(ns, name string) (*model.Secret, error) { return m.secrets[ns+"/"+name], nil }
	m.snap.KubeService = func(ns, name string) (*model.KubeService, error) { return m.kube[ns+"/"+name], nil }
	m.snap.ServiceEntryState = func(ns, name string) (*model.ServiceEntryState, error) { return m.states[ns+"/"+name], nil }
	for i := range kubeServices {
		name := fmt.Sprintf("kube-%d", i)
		m.kube[fixture.Namespace+"/"+name] = &model.KubeService{ResourceVersion: m.next()}
		m.snap.ServiceEntries = append(m.snap.ServiceEntries, fixture.Object(model.SyntheticPrefix+name, &networking.ServiceEntry{
			Hosts:     []string{name + "." + fixture.Namespace + ".svc.cluster.local"},
			Addresses: []string{fixture.Address(9000 + i)},
			Ports:     []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
		}, nil))
	}
	for i := range allocated {
		name := fmt.Sprintf("auto-%d", i)
		host := name + "." + fixture.Namespace + ".example"
		m.snap.ServiceEntries = append(m.snap.ServiceEntries, fixture.Object(name, &networking.ServiceEntry{
			Hosts:            []string{host},
			Ports:            []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			Resolution:       networking.ServiceEntry_DNS,
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": name}},
		}, map[string]string{"interface": fmt.Sprintf("org.example.Auto%d", i)}))
		m.states[fixture.Namespace+"/"+name] = &model.ServiceEntryState{
			Annotations: map[string]string{"interface": fmt.Sprintf("org.example.Auto%d", i)},
			Addresses:   []model.HostAddress{{Host: host, Address: fmt.Sprintf("240.241.0.%d", i+1)}},
		}
	}
	return m
}

// next is a fresh resource version.
func (m *mesh) next() string {
	m.version++
	return "v" + strconv.Itoa(m.version)
}

// list is the snapshot's list of a kind.
func (m *mesh) list(kind model.ObjectKind) *[]model.Object {
	s := m.snap
	return []*[]model.Object{&s.ServiceEntries, &s.VirtualServices, &s.DestinationRules, &s.WorkloadEntries, &s.RedisServices, &s.RedisDestinations}[kind]
}

// replace swaps the i-th object of a kind for a changed copy, at a new version. The
// change must replace what it changes (Spec, Annotations), not modify it in place.
func (m *mesh) replace(kind model.ObjectKind, i int, change func(*model.Object)) {
	list := *m.list(kind)
	c := list[i]
	change(&c)
	c.ResourceVersion = m.next()
	list[i] = c
	m.changed(kind, c)
}

// changed records an object as it is now.
func (m *mesh) changed(kind model.ObjectKind, c model.Object) {
	m.delta.Objects = append(m.delta.Objects, model.Change{Kind: kind, Object: c})
}

// remove deletes the i-th object of a kind.
func (m *mesh) remove(kind model.ObjectKind, i int) model.Object {
	list := m.list(kind)
	c := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	m.delta.Objects = append(m.delta.Objects, model.Change{Kind: kind, Object: c, Deleted: true})
	return c
}

// add appends objects of a kind.
func (m *mesh) add(kind model.ObjectKind, objs ...model.Object) {
	*m.list(kind) = append(*m.list(kind), objs...)
	for _, c := range objs {
		m.changed(kind, c)
	}
}

// take returns the changes since it was last called.
func (m *mesh) take() model.Delta {
	d := m.delta
	m.delta = model.Delta{}
	return d
}

// setRedisService changes a copy of the i-th RedisService's spec.
func (m *mesh) setRedisService(i int, change func(*redisspec.RedisServiceSpec)) {
	m.replace(model.RedisServiceKind, i, func(c *model.Object) {
		spec := c.Spec.(*redisspec.RedisServiceSpec).DeepCopy()
		change(spec)
		c.Spec = spec
	})
}

// subsetSets are the subsets a mutated DestinationRule defines: the fixture's, fewer
// (a VirtualService's subset then is undefined), none, more.
var subsetSets = [][]string{{"v1", "v2"}, {"v1"}, {"v2"}, nil, {"v1", "v2", "v3"}}

// mutate makes one random change of the kinds that can touch a service: its own
// objects, the service another one routes to, a Secret and its namespace's grant,
// a host taken twice, a WorkloadEntry, a Kubernetes Service, the apiserver's state of
// a ServiceEntry.
func (m *mesh) mutate(r *rand.Rand) string {
	snap := m.snap
	switch op := r.IntN(15); op {
	case 0:
		i := r.IntN(len(snap.VirtualServices))
		w := int32(r.IntN(101))
		m.replace(model.VirtualServiceKind, i, func(c *model.Object) {
			c.Spec = fixture.Split(c.Spec.(*networking.VirtualService).GetHosts()[0], w)
		})
		return fmt.Sprintf("VirtualService %s weight %d", snap.VirtualServices[i].Name, w)
	case 1:
		i := r.IntN(len(snap.ServiceEntries))
		iface := fmt.Sprintf("org.example.Changed%d", r.IntN(1000))
		// A ServiceEntry istiod derives from a Kubernetes Service has no version: a
		// content change alone must be seen.
		c := snap.ServiceEntries[i]
		c.Annotations = map[string]string{"interface": iface}
		c.ResourceVersion = ""
		snap.ServiceEntries[i] = c
		m.changed(model.ServiceEntryKind, c)
		return "annotation of " + c.Name
	case 2:
		if len(snap.ServiceEntries) < 10 {
			return "nothing"
		}
		return "deleted " + m.remove(model.ServiceEntryKind, r.IntN(len(snap.ServiceEntries))).Name
	case 3:
		j := len(snap.ServiceEntries) + 1000 + r.IntN(1000)
		added := fixture.Snapshot(fixture.Mixed, 0)
		if slices.ContainsFunc(snap.ServiceEntries, func(o model.Object) bool { return strings.HasSuffix(o.Name, fmt.Sprintf("-%d", j)) }) {
			return "nothing"
		}
		fixture.Add(added, fixture.Mixed, j)
		for kind, list := range [][]model.Object{added.ServiceEntries, added.VirtualServices, added.DestinationRules, added.WorkloadEntries, added.RedisServices, added.RedisDestinations} {
			m.add(model.ObjectKind(kind), list...)
		}
		return fmt.Sprintf("added service %d", j)
	case 4:
		// A Redis route to another Redis service (or to one that is gone).
		i, j := r.IntN(len(snap.RedisServices)), r.IntN(len(snap.RedisServices))
		target := m.snap.RedisServices[j].Spec.(*redisspec.RedisServiceSpec).Host[0]
		m.setRedisService(i, func(rs *redisspec.RedisServiceSpec) {
			rs.Redis = []redisspec.RedisRoute{
				{Match: &redisspec.RouteMatch{Key: redisspec.KeyMatch{Prefix: "x:"}}, Route: redisspec.RouteDestination{Host: target}},
				{Route: redisspec.RouteDestination{Host: rs.Host[0]}},
			}
		})
		return fmt.Sprintf("RedisService %s routes to %s", m.snap.RedisServices[i].Name, target)
	case 5:
		// The port of a service that others may route to.
		i := r.IntN(len(snap.ServiceEntries))
		port := uint32(20000 + r.IntN(1000))
		m.replace(model.ServiceEntryKind, i, func(c *model.Object) {
			se := proto.Clone(c.Spec.(*networking.ServiceEntry)).(*networking.ServiceEntry)
			se.Ports[0].Number = port
			c.Spec = se
		})
		return fmt.Sprintf("port of %s is %d", snap.ServiceEntries[i].Name, port)
	case 6:
		// Auth from a Secret, whose content then changes (or which goes away).
		i := r.IntN(len(snap.RedisServices))
		m.setRedisService(i, func(rs *redisspec.RedisServiceSpec) {
			rs.Settings = &redisspec.RedisSettings{Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "auth"}}}
		})
		key := fixture.Namespace + "/auth"
		m.secretChanged(r, key)
		if r.IntN(4) == 0 {
			delete(m.secrets, key)
			return "Secret deleted, used by " + m.snap.RedisServices[i].Name
		}
		m.secrets[key] = &model.Secret{
			Name: "auth", Namespace: fixture.Namespace, ResourceVersion: m.next(),
			Data: map[string][]byte{"password": []byte(m.next())},
		}
		return "Secret changed, used by " + m.snap.RedisServices[i].Name
	case 7:
		// The subsets of a DestinationRule, which its VirtualService may use.
		if len(snap.DestinationRules) == 0 {
			return "nothing"
		}
		i := r.IntN(len(snap.DestinationRules))
		names := subsetSets[r.IntN(len(subsetSets))]
		m.replace(model.DestinationRuleKind, i, func(c *model.Object) {
			dr := proto.Clone(c.Spec.(*networking.DestinationRule)).(*networking.DestinationRule)
			dr.Subsets = nil
			for _, n := range names {
				dr.Subsets = append(dr.Subsets, &networking.Subset{Name: n, Labels: map[string]string{"version": n}})
			}
			c.Spec = dr
		})
		return fmt.Sprintf("DestinationRule %s subsets %v", snap.DestinationRules[i].Name, names)
	case 8:
		// A VirtualService sending everything to one subset, which its DestinationRule
		// may or may not define.
		i := r.IntN(len(snap.VirtualServices))
		subset := []string{"v1", "v2", "v3"}[r.IntN(3)]
		m.replace(model.VirtualServiceKind, i, func(c *model.Object) {
			host := c.Spec.(*networking.VirtualService).GetHosts()[0]
			c.Spec = toSubset(host, subset)
		})
		return fmt.Sprintf("VirtualService %s to subset %s", snap.VirtualServices[i].Name, subset)
	case 9:
		// Another ServiceEntry of the same workloads and port, with a host of its
		// own (one per interface, as registry bridges make them): its server-side
		// filter is left out while the older one (by name: z sorts last) serves,
		// and written again when that one fails, changes or goes.
		i := r.IntN(len(snap.ServiceEntries))
		c := snap.ServiceEntries[i]
		se := proto.Clone(c.Spec.(*networking.ServiceEntry)).(*networking.ServiceEntry)
		c.Name = fmt.Sprintf("z-sibling-%d", r.IntN(1000))
		se.Hosts = []string{c.Name + "." + fixture.Namespace + ".example"}
		se.Addresses = []string{fixture.Address(5000 + r.IntN(1000))}
		c.Spec = se
		c.ResourceVersion = m.next()
		m.put(c)
		return "sibling of " + snap.ServiceEntries[i].Name
	case 10:
		// A WorkloadEntry of a service's workloads that serves its port on another
		// number (an inbound chain more), changed or deleted later.
		name := fmt.Sprintf("we-%d", r.IntN(4))
		if i := slices.IndexFunc(snap.WorkloadEntries, func(o model.Object) bool { return o.Name == name }); i >= 0 && r.IntN(3) == 0 {
			m.remove(model.WorkloadEntryKind, i)
			return "deleted WorkloadEntry " + name
		}
		target := snap.ServiceEntries[r.IntN(len(snap.ServiceEntries))]
		se := target.Spec.(*networking.ServiceEntry)
		we := &networking.WorkloadEntry{Address: "10.0.0.1", Labels: se.GetWorkloadSelector().GetLabels(),
			Ports: map[string]uint32{se.GetPorts()[0].GetName(): uint32(30000 + r.IntN(100))}}
		c := fixture.Object(name, we, nil)
		c.ResourceVersion = m.next()
		if i := slices.IndexFunc(snap.WorkloadEntries, func(o model.Object) bool { return o.Name == name }); i >= 0 {
			snap.WorkloadEntries[i] = c
			m.changed(model.WorkloadEntryKind, c)
		} else {
			m.add(model.WorkloadEntryKind, c)
		}
		return fmt.Sprintf("WorkloadEntry %s of %s", name, target.Name)
	case 11:
		// A Kubernetes Service: its target port, or headless with endpoints.
		name := fmt.Sprintf("kube-%d", r.IntN(kubeServices))
		ks := &model.KubeService{ResourceVersion: m.next()}
		if r.IntN(2) == 0 {
			ks.TargetPorts = map[uint32]uint32{20880: uint32(21000 + r.IntN(10))}
		} else {
			ks.Endpoints = []string{fmt.Sprintf("10.1.0.%d", 1+r.IntN(5))}
		}
		m.kube[fixture.Namespace+"/"+name] = ks
		m.delta.Services = append(m.delta.Services, fixture.Namespace+"/"+model.SyntheticPrefix+name)
		return "Kubernetes Service " + name
	case 12:
		// What the apiserver has of a ServiceEntry: the address Istio allocated, the
		// annotations (which istiod may send late), or nothing yet.
		name := fmt.Sprintf("auto-%d", r.IntN(allocated))
		key := fixture.Namespace + "/" + name
		m.delta.Services = append(m.delta.Services, key)
		if r.IntN(4) == 0 {
			delete(m.states, key)
			return "apiserver state of " + name + " gone"
		}
		m.states[key] = &model.ServiceEntryState{
			Annotations: map[string]string{"interface": fmt.Sprintf("org.example.Auto%d", r.IntN(3))},
			Addresses:   []model.HostAddress{{Host: name + "." + fixture.Namespace + ".example", Address: fmt.Sprintf("240.241.1.%d", 1+r.IntN(5))}},
		}
		return "apiserver state of " + name
	case 13:
		// The namespace of the Secret withdraws its grant, or gives it again.
		key := fixture.Namespace + "/auth"
		m.secretChanged(r, key)
		if s := m.secrets[key]; s != nil && !s.Forbidden {
			m.secrets[key] = &model.Secret{Name: "auth", Namespace: fixture.Namespace, Forbidden: true}
			return "grant of the Secret withdrawn"
		}
		m.secrets[key] = &model.Secret{Name: "auth", Namespace: fixture.Namespace, ResourceVersion: m.next(),
			Data: map[string][]byte{"password": []byte(m.next())}}
		return "grant of the Secret given"
	default:
		// A second ServiceEntry for a host another one has: a conflict, and a host
		// lookup that may now find another service.
		i := r.IntN(len(snap.ServiceEntries))
		c := snap.ServiceEntries[i]
		c.Name = "a-twin-" + strconv.Itoa(r.IntN(1000))
		c.ResourceVersion = m.next()
		m.put(c)
		return "twin of " + snap.ServiceEntries[i].Name
	}
}

// secretChanged records a change of a Secret: by name, as a watch would tell it, or
// as a poll does, every Secret to be read again.
func (m *mesh) secretChanged(r *rand.Rand, key string) {
	if r.IntN(2) == 0 {
		m.delta.RereadSecrets = true
		return
	}
	m.delta.Secrets = append(m.delta.Secrets, key)
}

// put adds a ServiceEntry, or replaces the one of its name.
func (m *mesh) put(c model.Object) {
	if i := slices.IndexFunc(m.snap.ServiceEntries, func(o model.Object) bool { return o.Name == c.Name }); i >= 0 {
		m.snap.ServiceEntries[i] = c
		m.changed(model.ServiceEntryKind, c)
		return
	}
	m.add(model.ServiceEntryKind, c)
}

// toSubset is a VirtualService for host sending everything to one subset.
func toSubset(host, subset string) *networking.VirtualService {
	return &networking.VirtualService{
		Hosts: []string{host},
		Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: host, Subset: subset}},
		}}},
	}
}

// summary is everything a push acts on, comparable with cmp.
type summary struct {
	Filters  map[string]string
	Failed   map[string]string
	Skipped  map[string][]string
	Services map[model.Protocol]int
	Verdicts map[model.ObjectRef]model.Verdict
	// Duplicates are the server-side filters left out.
	Duplicates map[string]string
}

func summarize(t *testing.T, tr *translate.Translation) summary {
	t.Helper()
	s := summary{Filters: map[string]string{}, Failed: map[string]string{}, Skipped: map[string][]string{}, Services: tr.Services, Verdicts: tr.Verdicts, Duplicates: tr.Duplicates}
	for k, ef := range tr.Filters {
		doc, err := ef.Document()
		if err != nil {
			t.Fatal(err)
		}
		s.Filters[k] = string(doc)
	}
	for k, e := range tr.Failed {
		s.Failed[k] = e.Error()
	}
	for k, list := range tr.Skipped {
		for _, e := range list {
			s.Skipped[k] = append(s.Skipped[k], e.Error())
		}
	}
	return s
}

// The incremental translations must always equal a translation from nothing, change
// after change, whatever the change: one that is told what changed (Update, as the
// controller's pushes are), and one that is given the whole config (Translate, as
// the controller's resyncs are, reusing what did not change). With a route server
// too, whose shared ports depend on every service of the port.
func TestTranslatorEqualsFullTranslation(t *testing.T) {
	for name, ctx := range map[string]generator.Context{"inline routes": translatorContext, "route server": sharedContext} {
		t.Run(name, func(t *testing.T) { equalsFullTranslation(t, ctx) })
	}
}

func equalsFullTranslation(t *testing.T, ctx generator.Context) {
	reg := plugin.Registry(plugin.Options{KafkaContribFilter: true})
	m := newMesh(60)
	cached := translate.NewTranslator(ctx, reg)
	incremental := translate.NewTranslator(ctx, reg)
	first, err := incremental.Translate(m.snap)
	if err != nil {
		t.Fatal(err)
	}
	previous := maps.Clone(first.Filters)
	r := rand.New(rand.NewPCG(1, 2))
	var before summary
	drEffects, leftOut, back, updated := 0, 0, 0, 0
	for step := range 400 {
		change := m.mutate(r)
		want, err := translate.Translate(ctx, reg, m.snap)
		if err != nil {
			t.Fatalf("step %d (%s): full translation: %v", step, change, err)
		}
		full := summarize(t, want)
		got, err := cached.Translate(m.snap)
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, change, err)
		}
		if diff := cmp.Diff(full, summarize(t, got)); diff != "" {
			t.Fatalf("step %d (%s): translation of the whole config differs from full (-full +cached):\n%s", step, change, diff)
		}
		if step > 0 && got.Reused == 0 {
			t.Fatalf("step %d (%s): every service generated again", step, change)
		}
		if got.Generated+got.Reused != want.Generated || want.Reused != 0 {
			t.Fatalf("step %d (%s): incremental generated %d and reused %d, full generated %d and reused %d",
				step, change, got.Generated, got.Reused, want.Generated, want.Reused)
		}
		got, err = incremental.Update(m.take())
		if err != nil {
			t.Fatalf("step %d (%s): update: %v", step, change, err)
		}
		if diff := cmp.Diff(full, summarize(t, got)); diff != "" {
			t.Fatalf("step %d (%s): update differs from full (-full +update):\n%s", step, change, diff)
		}
		if got.Generated > 0 {
			updated++
		}
		// What the update says changed is what changed.
		for key := range keysOfBoth(previous, got.Filters) {
			if previous[key] != got.Filters[key] && !got.Changed[key] {
				t.Fatalf("step %d (%s): filter %s changed, not in Changed", step, change, key)
			}
		}
		previous = maps.Clone(got.Filters)
		if strings.HasPrefix(change, "DestinationRule") && !cmp.Equal(before.Failed, full.Failed) {
			drEffects++
		}
		for key := range full.Duplicates {
			if _, was := before.Duplicates[key]; !was {
				leftOut++
			}
		}
		for key := range before.Duplicates {
			if _, still := full.Duplicates[key]; !still && full.Filters[key] != "" {
				back++
			}
		}
		before = full
	}
	// The DestinationRule changes must make some service fail or recover, or they
	// test nothing.
	if drEffects == 0 {
		t.Error("no DestinationRule change changed which services fail")
	}
	// Server-side filters must be left out, and come back, or the siblings test nothing.
	if leftOut == 0 || back == 0 {
		t.Errorf("server-side filters left out %d times, written again %d times; want both", leftOut, back)
	}
	if updated == 0 {
		t.Error("no update generated anything")
	}
}

func keysOfBoth[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func TestTranslatorGeneratesOnlyWhatChanged(t *testing.T) {
	reg := plugin.Registry(plugin.Options{KafkaContribFilter: true})
	m := newMesh(100)
	tr := translate.NewTranslator(translatorContext, reg)
	translate := func() *translate.Translation {
		t.Helper()
		got, err := tr.Translate(m.snap)
		if err != nil {
			t.Fatal(err)
		}
		if got.Generated+got.Reused != len(m.snap.ServiceEntries) {
			t.Fatalf("generated %d and reused %d of %d services", got.Generated, got.Reused, len(m.snap.ServiceEntries))
		}
		return got
	}
	first := translate()
	all := len(m.snap.ServiceEntries)
	if first.Generated != all || len(first.Failed) != 0 {
		t.Fatalf("first translation generated %d of %d, failed %v", first.Generated, all, first.Failed)
	}
	if got := translate(); got.Generated != 0 {
		t.Errorf("nothing changed, %d services generated", got.Generated)
	}

	// A VirtualService: its service only.
	m.replace(model.VirtualServiceKind, 0, func(c *model.Object) {
		c.Spec = fixture.Split(c.Spec.(*networking.VirtualService).GetHosts()[0], 50)
	})
	second := translate()
	if second.Generated != 1 {
		t.Errorf("one VirtualService changed, %d services generated", second.Generated)
	}
	// Reused means the same objects: the plan then knows them unchanged without
	// comparing them again.
	var regenerated []string
	for k, ef := range second.Filters {
		if ef != first.Filters[k] {
			regenerated = append(regenerated, ef.Annotations[model.ServiceAnnotation])
		}
	}
	if slices.Sort(regenerated); !slices.Equal(slices.Compact(regenerated), []string{fixture.Namespace + "/dubbo-0"}) {
		t.Errorf("filters made again for %v, want those of bench/dubbo-0 only", regenerated)
	}

	// A DestinationRule: the VirtualService of dubbo-0 first sends everything to a
	// subset no DestinationRule defines (the service fails), then its DestinationRule
	// defines it (the service generates again, with the subset's cluster).
	const dubbo0 = fixture.Namespace + "/dubbo-0"
	dubboHost := m.snap.VirtualServices[0].Spec.(*networking.VirtualService).GetHosts()[0]
	m.replace(model.VirtualServiceKind, 0, func(c *model.Object) { c.Spec = toSubset(dubboHost, "v3") })
	undefined := translate()
	if undefined.Generated != 1 || undefined.Failed[dubbo0] == nil || !strings.Contains(undefined.Failed[dubbo0].Error(), `subset "v3"`) {
		t.Fatalf("VirtualService to an undefined subset: %d generated, failed %v; want 1 and %s failing on subset v3", undefined.Generated, undefined.Failed, dubbo0)
	}
	if m.snap.DestinationRules[0].Spec.(*networking.DestinationRule).GetHost() != dubboHost {
		t.Fatalf("DestinationRule 0 is not for %s", dubboHost)
	}
	m.replace(model.DestinationRuleKind, 0, func(c *model.Object) {
		dr := proto.Clone(c.Spec.(*networking.DestinationRule)).(*networking.DestinationRule)
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: "v3", Labels: map[string]string{"version": "v3"}})
		c.Spec = dr
	})
	defined := translate()
	if defined.Generated != 1 || len(defined.Failed) != 0 {
		t.Fatalf("DestinationRule defined the subset: %d generated, failed %v; want 1 and none", defined.Generated, defined.Failed)
	}
	wantCluster := model.OutboundClusterName(20880, "v3", dubboHost)
	if !slices.ContainsFunc(slices.Collect(maps.Values(defined.Filters)), func(ef *model.EnvoyFilter) bool {
		doc, _ := ef.Document()
		return ef.Annotations[model.ServiceAnnotation] == dubbo0 && strings.Contains(string(doc), wantCluster)
	}) {
		t.Errorf("the filters of %s do not route to %s", dubbo0, wantCluster)
	}

	// A service that a Redis route names: the router too.
	router, target := 0, 1
	targetHost := m.snap.RedisServices[target].Spec.(*redisspec.RedisServiceSpec).Host[0]
	m.setRedisService(router, func(rs *redisspec.RedisServiceSpec) {
		rs.Redis = []redisspec.RedisRoute{{Route: redisspec.RouteDestination{Host: targetHost}}}
	})
	if got := translate(); got.Generated != 1 {
		t.Errorf("one RedisService changed, %d services generated", got.Generated)
	}
	i := slices.IndexFunc(m.snap.ServiceEntries, func(c model.Object) bool { return c.Name == m.snap.RedisServices[target].Name })
	m.replace(model.ServiceEntryKind, i, func(c *model.Object) {
		se := proto.Clone(c.Spec.(*networking.ServiceEntry)).(*networking.ServiceEntry)
		se.Ports[0].Number = 7000
		c.Spec = se
	})
	third := translate()
	if third.Generated != 2 {
		t.Errorf("the port of a routed-to service changed, %d services generated; want 2 (it and its router)", third.Generated)
	}
	routerKey := fixture.Namespace + "/" + m.snap.RedisServices[router].Name
	if !slices.ContainsFunc(slices.Collect(maps.Values(third.Filters)), func(ef *model.EnvoyFilter) bool {
		doc, _ := ef.Document()
		return ef.Annotations[model.ServiceAnnotation] == routerKey && strings.Contains(string(doc), "outbound|7000||"+targetHost)
	}) {
		t.Errorf("the router's filter does not send to the new port 7000 of %s", targetHost)
	}

	tr.Reset()
	if got := translate(); got.Generated != all {
		t.Errorf("after Reset %d services generated, want all %d", got.Generated, all)
	}
}

// A view that fails keeps what the service has in that namespace, and costs the
// service nothing elsewhere; fixed, it is written again.
func TestFailedViewStaysInItsNamespace(t *testing.T) {
	objs, errs := manifest.ReadPaths([]string{"testdata/views.yaml"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	snap := objs.Snapshot(translatorContext.DomainSuffix)
	canary := slices.IndexFunc(snap.VirtualServices, func(o model.Object) bool { return o.Name == "orders-canary" })
	good := snap.VirtualServices[canary].Spec.(*networking.VirtualService)
	broken := proto.Clone(good).(*networking.VirtualService)
	broken.Http[0].Route[0].Destination.Subset = "nope"
	const (
		inCanary = "canary/aeraki-outbound-orders.shop.svc.cluster.local-20880"
		inRoot   = "istio-system/aeraki-outbound-orders.shop.svc.cluster.local-20880"
	)
	viewKey := translate.ViewKey("shop/orders", "canary")
	tr := translate.NewTranslator(translatorContext, plugin.Registry(plugin.Options{}))
	push := func(vs *networking.VirtualService) *translate.Translation {
		t.Helper()
		snap.VirtualServices[canary].Spec = vs
		out, err := tr.Translate(snap)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	first := push(good)
	if first.Filters[inCanary] == nil || first.Filters[inRoot] == nil || first.Failed[viewKey] != nil {
		t.Fatalf("with canary's rule valid: want orders' filters in canary and the root namespace and no failure; failed: %v", first.Failed)
	}
	second := push(broken)
	serr := second.Failed[viewKey]
	if serr == nil || serr.View != "canary" || !strings.Contains(serr.Error(), "namespace canary") {
		t.Fatalf("with canary's rule broken: failure %v, want one of the view of namespace canary", serr)
	}
	if second.Failed["shop/orders"] != nil || second.Filters[inRoot] == nil {
		t.Errorf("canary's broken rule failed orders for every namespace: %v", second.Failed["shop/orders"])
	}
	if second.Filters[inCanary] != nil {
		t.Errorf("canary's broken view still desired a filter")
	}
	changes := plan.Plan(second.Filters, first.Filters, second.Failed)
	if !changes.Empty() {
		t.Errorf("plan after the view failed: %d to create, %d to update, %d to delete; want the filters applied before kept",
			len(changes.Create), len(changes.Update), len(changes.Delete))
	}
	third := push(good)
	if third.Filters[inCanary] == nil || third.Failed[viewKey] != nil {
		t.Errorf("with canary's rule fixed: want its filter back and no failure")
	}
}

// Two ServiceEntries of the same workloads and port (one per Dubbo interface) write
// one server-side filter, the older one's; the younger one's comes back while the
// older one fails or once it is gone, and goes again when the older one is back.
func TestOneServerSideFilterForTheSameWorkloads(t *testing.T) {
	const (
		older   = "dubbo/orders"
		younger = "dubbo/billing"
		// The younger's name sorts first: creation time decides, not the name.
		olderIn   = "dubbo/aeraki-inbound-orders.dubbo.example-20880"
		youngerIn = "dubbo/aeraki-inbound-billing.dubbo.example-20880"
	)
	entry := func(name, iface, vip string, created time.Time) model.Object {
		return model.Object{Name: name, Namespace: "dubbo", ResourceVersion: "1", Created: created,
			Annotations: map[string]string{"interface": iface},
			Spec: &networking.ServiceEntry{
				Hosts: []string{name + ".dubbo.example"}, Addresses: []string{vip},
				Ports:            []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
				Resolution:       networking.ServiceEntry_STATIC,
				WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "shop"}},
			}}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	orders := entry("orders", "org.example.Orders", "240.240.0.1", t0)
	billing := entry("billing", "org.example.Billing", "240.240.0.2", t0.Add(time.Minute))
	reg := plugin.Registry(plugin.Options{})
	tr := translate.NewTranslator(translatorContext, reg)
	// cluster is what the plan's writes leave, starting from both inbound filters
	// written, as before filters were shared.
	cluster := map[string]*model.EnvoyFilter{}
	push := func(step string, entries ...model.Object) *translate.Translation {
		t.Helper()
		snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: entries}
		got, err := tr.Translate(snap)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		full, err := translate.Translate(translatorContext, reg, snap)
		if err != nil {
			t.Fatalf("%s: full translation: %v", step, err)
		}
		if diff := cmp.Diff(summarize(t, full), summarize(t, got)); diff != "" {
			t.Fatalf("%s: incremental differs from full (-full +incremental):\n%s", step, diff)
		}
		changes := plan.Plan(got.Filters, cluster, got.Failed)
		for _, ef := range slices.Concat(changes.Create, changes.Update) {
			cluster[ef.Key()] = ef
		}
		for _, ef := range changes.Delete {
			delete(cluster, ef.Key())
		}
		return got
	}
	inbound := func(step string, want ...string) {
		t.Helper()
		var got []string
		for key, ef := range cluster {
			if ef.SpecProto().GetWorkloadSelector() != nil {
				got = append(got, key+" of "+ef.Annotations[model.ServiceAnnotation])
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: server-side filters in the cluster %v, want %v", step, got, want)
		}
	}

	both := push("both, from nothing", billing, orders)
	if both.Duplicates[youngerIn] != olderIn || both.Filters[youngerIn] != nil || len(both.Failed) != 0 {
		t.Fatalf("both: duplicates %v, failed %v; want %s left out for %s", both.Duplicates, both.Failed, youngerIn, olderIn)
	}
	inbound("both", olderIn+" of "+older)
	for _, key := range []string{"istio-system/aeraki-outbound-orders.dubbo.example-20880", "istio-system/aeraki-outbound-billing.dubbo.example-20880"} {
		if cluster[key] == nil {
			t.Errorf("both: client side %s missing", key)
		}
	}

	// Written before filters were shared: the plan deletes the younger one's.
	stale := both.Filters[olderIn].SpecProto()
	cluster[youngerIn] = &model.EnvoyFilter{Name: "aeraki-inbound-billing.dubbo.example-20880", Namespace: "dubbo",
		Annotations: map[string]string{model.ServiceAnnotation: younger}, Spec: stale}
	push("the younger one's written before", billing, orders)
	inbound("the younger one's written before", olderIn+" of "+older)

	// The older one fails: its filter stays as applied, and the younger one's is
	// written again, so that its server side does not hang on a failed service.
	broken := orders
	broken.Annotations = map[string]string{"interface": "not a Java type"}
	broken.ResourceVersion = "2"
	failing := push("the older one fails", billing, broken)
	if failing.Failed[older] == nil || len(failing.Duplicates) != 0 {
		t.Fatalf("the older one fails: failed %v, duplicates %v", failing.Failed, failing.Duplicates)
	}
	inbound("the older one fails", youngerIn+" of "+younger, olderIn+" of "+older)

	// Fixed, it serves both again.
	fixed := orders
	fixed.ResourceVersion = "3"
	push("the older one fixed", billing, fixed)
	inbound("the older one fixed", olderIn+" of "+older)

	// Deleted, the younger one's serves.
	alone := push("the older one deleted", billing)
	if len(alone.Duplicates) != 0 || alone.Filters[youngerIn] == nil {
		t.Errorf("the older one deleted: duplicates %v, want the younger one's filter", alone.Duplicates)
	}
	inbound("the older one deleted", youngerIn+" of "+younger)

	// A later service of the younger one's host and namespace, on other workloads,
	// conflicts with it even where the younger one's filter is left out.
	twin := entry("billing-twin", "org.example.Billing", "", t0.Add(2*time.Minute))
	se := twin.Spec.(*networking.ServiceEntry)
	se.Hosts, se.Addresses = []string{"billing.dubbo.example"}, nil
	se.WorkloadSelector.Labels = map[string]string{"app": "other"}
	withTwin := push("a twin of the younger one", billing, orders, twin)
	if serr := withTwin.Failed["dubbo/billing-twin"]; serr == nil || !errors.Is(serr, translate.ErrConflict) || !strings.Contains(serr.Error(), younger) {
		t.Errorf("a twin of the younger one: %v, want a conflict with %s", serr, younger)
	}
	inbound("a twin of the younger one", olderIn+" of "+older)
}
