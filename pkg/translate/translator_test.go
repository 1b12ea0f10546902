package translate_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/fixture"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

var translatorContext = generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}

// mesh is a mutable config for the translator tests: the mixed fixture plus a
// Secret that a RedisService's auth reads.
type mesh struct {
	snap    *model.Snapshot
	secrets map[string]*corev1.Secret
	version int
}

func newMesh(n int) *mesh {
	m := &mesh{snap: fixture.Snapshot(fixture.Mixed, n), secrets: map[string]*corev1.Secret{}}
	m.snap.Secret = func(ns, name string) *corev1.Secret { return m.secrets[ns+"/"+name] }
	return m
}

// next is a fresh resource version.
func (m *mesh) next() string {
	m.version++
	return "v" + strconv.Itoa(m.version)
}

// replace swaps the i-th config of a list for a changed copy, at a new version.
func (m *mesh) replace(list []config.Config, i int, change func(*config.Config)) {
	c := list[i].DeepCopy()
	change(&c)
	c.ResourceVersion = m.next()
	list[i] = c
}

func (m *mesh) redisService(i int) *redisv1alpha1.RedisService {
	return m.snap.RedisServices[i].Spec.(*redisv1alpha1.RedisService)
}

func (m *mesh) setRedisService(i int, change func(*redisv1alpha1.RedisService)) {
	rs := m.redisService(i).DeepCopy()
	change(rs)
	rs.ResourceVersion = m.next()
	m.snap.RedisServices[i] = model.RedisConfig(rs)
}

// mutate makes one random change of the kinds that can touch a service: its own
// objects, the service another one routes to, a Secret, a host taken twice.
func (m *mesh) mutate(r *rand.Rand) string {
	snap := m.snap
	switch op := r.IntN(8); op {
	case 0:
		i := r.IntN(len(snap.VirtualServices))
		w := int32(r.IntN(101))
		m.replace(snap.VirtualServices, i, func(c *config.Config) {
			c.Spec = fixture.Split(c.Spec.(*networking.VirtualService).GetHosts()[0], w)
		})
		return fmt.Sprintf("VirtualService %s weight %d", snap.VirtualServices[i].Name, w)
	case 1:
		i := r.IntN(len(snap.ServiceEntries))
		iface := fmt.Sprintf("org.example.Changed%d", r.IntN(1000))
		// A ServiceEntry istiod derives from a Kubernetes Service has no version: a
		// content change alone must be seen.
		c := snap.ServiceEntries[i].DeepCopy()
		c.Annotations = map[string]string{"interface": iface}
		c.ResourceVersion = ""
		snap.ServiceEntries[i] = c
		return "annotation of " + c.Name
	case 2:
		if len(snap.ServiceEntries) < 10 {
			return "nothing"
		}
		i := r.IntN(len(snap.ServiceEntries))
		name := snap.ServiceEntries[i].Name
		snap.ServiceEntries = slices.Delete(snap.ServiceEntries, i, i+1)
		return "deleted " + name
	case 3:
		j := len(snap.ServiceEntries) + 1000 + r.IntN(1000)
		fixture.Add(snap, fixture.Mixed, j)
		return fmt.Sprintf("added service %d", j)
	case 4:
		// A Redis route to another Redis service (or to one that is gone).
		i, j := r.IntN(len(snap.RedisServices)), r.IntN(len(snap.RedisServices))
		target := m.redisService(j).Spec.Host[0]
		m.setRedisService(i, func(rs *redisv1alpha1.RedisService) {
			rs.Spec.Redis = []redisv1alpha1.RedisRoute{
				{Match: &redisv1alpha1.RouteMatch{Key: redisv1alpha1.KeyMatch{Prefix: "x:"}}, Route: redisv1alpha1.RouteDestination{Host: target}},
				{Route: redisv1alpha1.RouteDestination{Host: rs.Spec.Host[0]}},
			}
		})
		return fmt.Sprintf("RedisService %s routes to %s", m.redisService(i).Name, target)
	case 5:
		// The port of a service that others may route to.
		i := r.IntN(len(snap.ServiceEntries))
		port := uint32(20000 + r.IntN(1000))
		m.replace(snap.ServiceEntries, i, func(c *config.Config) {
			se := proto.Clone(c.Spec.(*networking.ServiceEntry)).(*networking.ServiceEntry)
			se.Ports[0].Number = port
			c.Spec = se
		})
		return fmt.Sprintf("port of %s is %d", snap.ServiceEntries[i].Name, port)
	case 6:
		// Auth from a Secret, whose content then changes (or which goes away).
		i := r.IntN(len(snap.RedisServices))
		m.setRedisService(i, func(rs *redisv1alpha1.RedisService) {
			rs.Spec.Settings = &redisv1alpha1.RedisSettings{Auth: &redisv1alpha1.Auth{Secret: &redisv1alpha1.SecretReference{Name: "auth"}}}
		})
		key := fixture.Namespace + "/auth"
		if r.IntN(4) == 0 {
			delete(m.secrets, key)
			return "Secret deleted, used by " + m.redisService(i).Name
		}
		m.secrets[key] = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "auth", Namespace: fixture.Namespace, ResourceVersion: m.next()},
			Data:       map[string][]byte{"password": []byte(m.next())},
		}
		return "Secret changed, used by " + m.redisService(i).Name
	default:
		// A second ServiceEntry for a host another one has: a conflict, and a host
		// lookup that may now find another service.
		i := r.IntN(len(snap.ServiceEntries))
		c := snap.ServiceEntries[i].DeepCopy()
		c.Name = "a-twin-" + strconv.Itoa(r.IntN(1000))
		c.ResourceVersion = m.next()
		snap.ServiceEntries = append(snap.ServiceEntries, c)
		return "twin of " + snap.ServiceEntries[i].Name
	}
}

// summary is everything a push acts on, comparable with cmp.
type summary struct {
	Filters  map[string]string
	Failed   map[string]string
	Skipped  map[string][]string
	Services map[model.Protocol]int
}

func summarize(t *testing.T, tr *translate.Translation) summary {
	t.Helper()
	s := summary{Filters: map[string]string{}, Failed: map[string]string{}, Skipped: map[string][]string{}, Services: tr.Services}
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

// The incremental translation must always equal a translation from nothing, change
// after change, whatever the change.
func TestTranslatorEqualsFullTranslation(t *testing.T) {
	reg := plugin.Registry(plugin.Options{KafkaContribFilter: true})
	m := newMesh(60)
	tr := translate.NewTranslator(translatorContext, reg)
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 300 {
		change := m.mutate(r)
		services := model.BuildServices(m.snap)
		got, generated := tr.Translate(m.snap, services)
		want := translate.Translate(translatorContext.ForPush(m.snap, services), reg, services)
		if diff := cmp.Diff(summarize(t, want), summarize(t, got)); diff != "" {
			t.Fatalf("step %d (%s): incremental differs from full (-full +incremental):\n%s", step, change, diff)
		}
		if generated == len(services) && step > 0 {
			t.Fatalf("step %d (%s): every service generated again", step, change)
		}
	}
}

func TestTranslatorGeneratesOnlyWhatChanged(t *testing.T) {
	reg := plugin.Registry(plugin.Options{KafkaContribFilter: true})
	m := newMesh(100)
	tr := translate.NewTranslator(translatorContext, reg)
	translate := func() (*translate.Translation, int) {
		return tr.Translate(m.snap, model.BuildServices(m.snap))
	}
	first, generated := translate()
	if generated != 100 || len(first.Failed) != 0 {
		t.Fatalf("first translation generated %d of 100, failed %v", generated, first.Failed)
	}
	if _, generated := translate(); generated != 0 {
		t.Errorf("nothing changed, %d services generated", generated)
	}

	// A VirtualService: its service only.
	m.replace(m.snap.VirtualServices, 0, func(c *config.Config) {
		c.Spec = fixture.Split(c.Spec.(*networking.VirtualService).GetHosts()[0], 50)
	})
	second, generated := translate()
	if generated != 1 {
		t.Errorf("one VirtualService changed, %d services generated", generated)
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

	// A service that a Redis route names: the router too.
	router, target := 0, 1
	targetHost := m.redisService(target).Spec.Host[0]
	m.setRedisService(router, func(rs *redisv1alpha1.RedisService) {
		rs.Spec.Redis = []redisv1alpha1.RedisRoute{{Route: redisv1alpha1.RouteDestination{Host: targetHost}}}
	})
	if _, generated := translate(); generated != 1 {
		t.Errorf("one RedisService changed, %d services generated", generated)
	}
	i := slices.IndexFunc(m.snap.ServiceEntries, func(c config.Config) bool { return c.Name == m.redisService(target).Name })
	m.replace(m.snap.ServiceEntries, i, func(c *config.Config) {
		se := proto.Clone(c.Spec.(*networking.ServiceEntry)).(*networking.ServiceEntry)
		se.Ports[0].Number = 7000
		c.Spec = se
	})
	third, generated := translate()
	if generated != 2 {
		t.Errorf("the port of a routed-to service changed, %d services generated; want 2 (it and its router)", generated)
	}
	routerKey := fixture.Namespace + "/" + m.redisService(router).Name
	if !slices.ContainsFunc(slices.Collect(maps.Values(third.Filters)), func(ef *model.EnvoyFilter) bool {
		doc, _ := ef.Document()
		return ef.Annotations[model.ServiceAnnotation] == routerKey && strings.Contains(string(doc), "outbound|7000||"+targetHost)
	}) {
		t.Errorf("the router's filter does not send to the new port 7000 of %s", targetHost)
	}

	tr.Reset()
	if _, generated := translate(); generated != 100 {
		t.Errorf("after Reset %d services generated, want all 100", generated)
	}
}
