package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
)

// togetherRounds is how often the ServiceEntry, VirtualService and DestinationRule
// are applied together.
const togetherRounds = 50

// weightedRoute is round i of TestAppliedTogetherIsNeverHalfPushed: the service's
// interface named for the round, a VirtualService splitting its calls by weight
// between two subsets named for the round, and the DestinationRule defining just
// those. A VirtualService without the DestinationRule of its round names a subset
// that is not defined, and a ServiceEntry with the routing of another round makes a
// spec that is no round's: any push that mixes rounds shows.
type weightedRoute struct {
	host   string
	round  int
	weight int32 // of the first subset; the second gets the rest
}

func (r weightedRoute) iface() string { return fmt.Sprintf("org.example.Together%d", r.round) }

func (r weightedRoute) subsets() (string, string) {
	return fmt.Sprintf("r%d-a", r.round), fmt.Sprintf("r%d-b", r.round)
}

func (r weightedRoute) virtualService() *networking.VirtualService {
	a, b := r.subsets()
	return &networking.VirtualService{
		Hosts: []string{r.host},
		Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: r.host, Subset: a}, Weight: r.weight},
			{Destination: &networking.Destination{Host: r.host, Subset: b}, Weight: 100 - r.weight},
		}}},
	}
}

func (r weightedRoute) destinationRule() *networking.DestinationRule {
	a, b := r.subsets()
	return &networking.DestinationRule{
		Host: r.host,
		Subsets: []*networking.Subset{
			{Name: a, Labels: map[string]string{"version": a}},
			{Name: b, Labels: map[string]string{"version": b}},
		},
	}
}

// TestAppliedTogetherIsNeverHalfPushed: a ServiceEntry, its VirtualService and the
// DestinationRule defining the subsets, applied together over and over (in turns
// in each order), never make the controller act on some without the others.
// istiod sends each kind in its own response, and may send a kind before it has
// seen the others; a push from such a view would report a subset that is not
// defined, or write routes the user never asked for.
func TestAppliedTogetherIsNeverHalfPushed(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	d := dubboService{name: "together", host: "together.dubbo.example", vip: "240.240.0.95"}
	e.createDubbo(t, d)
	e.waitDubboFilters(t, d, true)
	outbound := d.outbound()

	// Every spec written to the outbound filter from now on.
	efs := e.istio.NetworkingV1alpha3().EnvoyFilters(outbound.Namespace)
	list, err := efs.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := efs.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion,
		FieldSelector: fields.OneTermEqualSelector("metadata.name", outbound.Name).String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var (
		mu      sync.Mutex
		written []*networking.EnvoyFilter
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range w.ResultChan() {
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			if ef, ok := ev.Object.(*clientnetworkingv1alpha3.EnvoyFilter); ok {
				mu.Lock()
				written = append(written, proto.CloneOf(&ef.Spec))
				mu.Unlock()
			}
		}
	}()

	ses := e.istio.NetworkingV1().ServiceEntries(appNS)
	vss := e.istio.NetworkingV1().VirtualServices(appNS)
	drs := e.istio.NetworkingV1().DestinationRules(appNS)
	applySE := func(r weightedRoute) error {
		se, err := ses.Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		se.Annotations["interface"] = r.iface()
		_, err = ses.Update(ctx, se, metav1.UpdateOptions{})
		return err
	}
	applyVS := func(r weightedRoute) error {
		if r.round == 0 {
			vs := &clientnetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "together", Namespace: appNS}, Spec: *r.virtualService()}
			_, err := vss.Create(ctx, vs, metav1.CreateOptions{})
			return err
		}
		vs, err := vss.Get(ctx, "together", metav1.GetOptions{})
		if err != nil {
			return err
		}
		vs.Spec = *r.virtualService()
		_, err = vss.Update(ctx, vs, metav1.UpdateOptions{})
		return err
	}
	applyDR := func(r weightedRoute) error {
		if r.round == 0 {
			dr := &clientnetworking.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "together", Namespace: appNS}, Spec: *r.destinationRule()}
			_, err := drs.Create(ctx, dr, metav1.CreateOptions{})
			return err
		}
		dr, err := drs.Get(ctx, "together", metav1.GetOptions{})
		if err != nil {
			return err
		}
		dr.Spec = *r.destinationRule()
		_, err = drs.Update(ctx, dr, metav1.UpdateOptions{})
		return err
	}
	orders := [][]func(weightedRoute) error{{applySE, applyVS, applyDR}, {applyVS, applyDR, applySE}, {applyDR, applySE, applyVS}}
	var rounds []weightedRoute
	for i := range togetherRounds {
		r := weightedRoute{host: d.host, round: i, weight: int32(10 * (i%9 + 1))}
		rounds = append(rounds, r)
		for _, apply := range orders[i%len(orders)] {
			if err := apply(r); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if i%2 == 1 {
			// Every other round is waited for; the round between is applied while the
			// controller may still be pushing the one before, and replaced at once.
			want := expectedOutbound(t, d, r)
			e.waitSpec(t, outbound, "", func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool { return proto.Equal(&ef.Spec, want) })
		}
	}

	finals := make([]*networking.EnvoyFilter, len(rounds))
	for i, r := range rounds {
		finals[i] = expectedOutbound(t, d, r)
	}
	last := finals[len(finals)-1]
	e.waitSpec(t, outbound, "", func(ef *clientnetworkingv1alpha3.EnvoyFilter) bool { return proto.Equal(&ef.Spec, last) })
	w.Stop()
	<-watched

	mu.Lock()
	defer mu.Unlock()
	if len(written) == 0 {
		t.Fatal("no spec of the outbound filter was written")
	}
	for n, spec := range written {
		if !slicesContainsProto(finals, spec) {
			t.Errorf("write %d of %d of %s is not the spec of any round:\n%s", n+1, len(written), outbound.Name, specText(spec))
		}
	}
	t.Logf("%d rounds, %d writes of %s", togetherRounds, len(written), outbound.Name)

	// Events are sent in the background: give the last ones time to land.
	time.Sleep(2 * time.Second)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.kube.EventsV1().Events(appNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "GenerationFailed" {
				t.Errorf("Warning Event on %s %s/%s: %s", ev.Regarding.Kind, ev.Regarding.Namespace, ev.Regarding.Name, ev.Note)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// expectedOutbound is the spec of the service's outbound filter for round r, made by
// the translation alone.
func expectedOutbound(t *testing.T, d dubboService, r weightedRoute) *networking.EnvoyFilter {
	t.Helper()
	se := d.object()
	se.Annotations["interface"] = r.iface()
	snap := &model.Snapshot{
		ServiceEntries:   []model.Object{{Name: se.Name, Namespace: appNS, Annotations: se.Annotations, Spec: &se.Spec}},
		VirtualServices:  []model.Object{{Name: "together", Namespace: appNS, Spec: r.virtualService()}},
		DestinationRules: []model.Object{{Name: "together", Namespace: appNS, Spec: r.destinationRule()}},
		DomainSuffix:     "cluster.local",
		RootNamespace:    rootNS,
		KubeService:      func(string, string) (*model.KubeService, error) { return nil, nil },
		Secret:           func(string, string) (*model.Secret, error) { return nil, nil },
	}
	tr, err := translate.Translate(generator.Context{RootNamespace: rootNS, DomainSuffix: "cluster.local"}, plugin.Registry(plugin.Options{}), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Failed) > 0 {
		t.Fatalf("round %d does not translate: %v", r.round, tr.Failed)
	}
	for _, ef := range tr.Filters {
		if ef.Name == d.outbound().Name {
			return ef.SpecProto()
		}
	}
	t.Fatalf("round %d has no filter %s", r.round, d.outbound().Name)
	return nil
}

func slicesContainsProto(specs []*networking.EnvoyFilter, spec *networking.EnvoyFilter) bool {
	for _, s := range specs {
		if proto.Equal(s, spec) {
			return true
		}
	}
	return false
}

func specText(spec *networking.EnvoyFilter) string {
	return protojson.Format(spec)
}
