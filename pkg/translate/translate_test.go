package translate

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

var testContext = generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}

// serviceEntry is a ServiceEntry with one address and the given ports.
func serviceEntry(ns, name string, hosts []string, ports ...*networking.ServicePort) model.Object {
	return model.Object{Name: name, Namespace: ns, ResourceVersion: "1", Spec: &networking.ServiceEntry{
		Hosts: hosts, Addresses: []string{"10.0.0.1"}, Ports: ports, Resolution: networking.ServiceEntry_STATIC,
	}}
}

func dubbo(n uint32) *networking.ServicePort {
	return &networking.ServicePort{Number: n, Name: "tcp-dubbo", Protocol: "TCP"}
}

// fakeGen makes one EnvoyFilter per port named after the first host, or fails for
// services named "bad".
var fakeGen = generator.Func(func(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	if svc.Name == "bad" {
		return nil, errors.New("broken input")
	}
	return []*model.EnvoyFilter{{
		Name: patch.ObjectName(patch.Outbound, svc.Hosts[0], port.Number), Namespace: ctx.RootNamespace,
		Annotations: map[string]string{model.ServiceAnnotation: svc.Key()},
	}}, nil
})

func translateOK(t *testing.T, reg generator.Registry, snap *model.Snapshot) *Translation {
	t.Helper()
	got, err := Translate(testContext, reg, snap)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return got
}

func TestTranslate(t *testing.T) {
	snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: []model.Object{
		serviceEntry("a", "one", []string{"one.a"}, dubbo(20880), dubbo(20881)),
		serviceEntry("a", "bad", []string{"bad.a"}, dubbo(20880)),
		serviceEntry("b", "dup", []string{"one.a"}, dubbo(20880)),                                                    // same host and port as a/one
		serviceEntry("c", "thrift-only", []string{"t.c"}, &networking.ServicePort{Number: 9090, Name: "tcp-thrift"}), // no generator registered
		serviceEntry("c", "plain", []string{"p.c"}, &networking.ServicePort{Number: 80, Name: "http"}),               // no supported port: no service
	}}
	got := translateOK(t, generator.Registry{model.Dubbo: fakeGen}, snap)

	var keys []string
	for _, e := range SortedFilters(got.Filters) {
		keys = append(keys, e.Key())
	}
	want := "istio-system/aeraki-outbound-one.a-20880 istio-system/aeraki-outbound-one.a-20881"
	if strings.Join(keys, " ") != want {
		t.Errorf("filters = %v, want %s", keys, want)
	}
	if len(got.Failed) != 2 || got.Failed["a/bad"] == nil || got.Failed["b/dup"] == nil {
		t.Fatalf("failed = %v, want a/bad and b/dup", got.Failed)
	}
	if msg := got.Failed["a/bad"].Error(); !strings.Contains(msg, "broken input") || !strings.Contains(msg, "ServiceEntry a/bad port 20880 (dubbo)") {
		t.Errorf("generator error %q does not name the service, port and cause", msg)
	}
	if msg := got.Failed["b/dup"].Error(); !strings.Contains(msg, "also generated for a/one") || !errors.Is(got.Failed["b/dup"], ErrConflict) {
		t.Errorf("conflict error %q does not name the other service, or is not ErrConflict", msg)
	}
	if got.Services[model.Dubbo] != 1 || got.Services[model.Thrift] != 0 {
		t.Errorf("service counts = %v", got.Services)
	}
	if len(got.Skipped) != 0 {
		t.Errorf("skipped = %v", got.Skipped)
	}
	if got.Generated != 4 || got.Reused != 0 {
		t.Errorf("generated %d, reused %d; want 4 and 0 in a first translation", got.Generated, got.Reused)
	}
}

// TestTranslateConflictNamesThePort: the conflict is reported on the port whose
// filter is taken, not on the service's first port.
func TestTranslateConflictNamesThePort(t *testing.T) {
	snap := &model.Snapshot{DomainSuffix: "cluster.local", ServiceEntries: []model.Object{
		serviceEntry("a", "one", []string{"one.a"}, dubbo(20880), dubbo(20881)),
		// 20870 is free; 20881 is a/one's.
		serviceEntry("b", "late", []string{"one.a"}, dubbo(20870), dubbo(20881)),
	}}
	got := translateOK(t, generator.Registry{model.Dubbo: fakeGen}, snap)
	serr := got.Failed["b/late"]
	if serr == nil {
		t.Fatalf("failed = %v, want b/late", got.Failed)
	}
	if serr.Port.Number != 20881 || !strings.Contains(serr.Error(), "port 20881") || strings.Contains(serr.Error(), "20870") {
		t.Errorf("conflict on port %d: %q; want it on port 20881", serr.Port.Number, serr.Error())
	}
	if !errors.Is(serr, ErrConflict) || !strings.Contains(serr.Error(), "aeraki-outbound-one.a-20881") {
		t.Errorf("conflict error %q does not name the EnvoyFilter taken", serr.Error())
	}
	// The failed service keeps nothing, not even its free port's filter.
	if _, ok := got.Filters["istio-system/"+patch.ObjectName(patch.Outbound, "one.a", 20870)]; ok || len(got.Filters) != 2 {
		t.Errorf("filters %v: want a/one's two only", slices.Sorted(maps.Keys(got.Filters)))
	}

	// The same within one service: two ports that make one filter.
	twice := generator.Func(func(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
		return []*model.EnvoyFilter{{Name: patch.ObjectName(patch.Outbound, svc.Hosts[0], min(port.Number, 20881)), Namespace: ctx.RootNamespace}}, nil
	})
	snap.ServiceEntries = []model.Object{serviceEntry("a", "one", []string{"one.a"}, dubbo(20880), dubbo(20881), dubbo(20882))}
	got = translateOK(t, generator.Registry{model.Dubbo: twice}, snap)
	if serr := got.Failed["a/one"]; serr == nil || serr.Port.Number != 20882 || !errors.Is(serr, ErrConflict) {
		t.Errorf("a service making one filter on two ports: %v; want a conflict on port 20882", serr)
	}
}

func TestTranslateTellsOfAMissingAddress(t *testing.T) {
	headless := serviceEntry("a", "headless", []string{"h.a"}, dubbo(2181))
	headless.Spec.(*networking.ServiceEntry).Addresses = []string{"0.0.0.0"}
	got := translateOK(t, generator.Registry{model.Dubbo: fakeGen}, &model.Snapshot{ServiceEntries: []model.Object{headless}})
	skipped := got.Skipped["a/headless"]
	if len(got.Filters) != 1 || len(skipped) != 1 || !strings.Contains(skipped[0].Error(), "no address") {
		t.Fatalf("filters %d, skipped %v: want the filter and a note about the missing address", len(got.Filters), skipped)
	}
}

// An address Istio allocated is an outbound listener of the service's own: there is
// no missing address to tell of.
func TestTranslateAllocatedAddressIsNoMissingAddress(t *testing.T) {
	se := serviceEntry("a", "external", []string{"e.a"}, dubbo(2181))
	se.Spec.(*networking.ServiceEntry).Addresses = nil
	snap := &model.Snapshot{ServiceEntries: []model.Object{se}, ServiceEntryState: func(string, string) (*model.ServiceEntryState, error) {
		return &model.ServiceEntryState{Addresses: []model.HostAddress{{Host: "e.a", Address: "240.240.0.1"}}}, nil
	}}
	got := translateOK(t, generator.Registry{model.Dubbo: fakeGen}, snap)
	if len(got.Filters) != 1 || len(got.Skipped) != 0 {
		t.Errorf("filters %d, skipped %v: want the filter and no note", len(got.Filters), got.Skipped)
	}

	// Not allocated (yet): the note says what makes Istio allocate one.
	snap.ServiceEntryState = func(string, string) (*model.ServiceEntryState, error) { return &model.ServiceEntryState{}, nil }
	got = translateOK(t, generator.Registry{model.Dubbo: fakeGen}, snap)
	notes := got.Skipped["a/external"]
	if len(notes) != 1 || notes[0].Err.Error() != NoAllocatedAddressReason || !strings.Contains(NoAllocatedAddressReason, "PILOT_ENABLE_IP_AUTOALLOCATE") {
		t.Errorf("notes %v, want the one that says how Istio allocates an address", got.Skipped)
	}
}

// TestTranslateFailsOnAReadError: a read of the snapshot that fails (not a missing
// object) fails the translation; nothing is translated from a partial view.
func TestTranslateFailsOnAReadError(t *testing.T) {
	boom := errors.New("apiserver unavailable")
	reg := generator.Registry{model.Dubbo: fakeGen}
	for _, c := range []struct {
		name string
		snap *model.Snapshot
		want string
	}{
		{
			name: "KubeService",
			snap: &model.Snapshot{
				ServiceEntries: []model.Object{serviceEntry("a", model.SyntheticPrefix+"svc", []string{"svc.a.svc.cluster.local"}, dubbo(20880))},
				KubeService:    func(string, string) (*model.KubeService, error) { return nil, boom },
				DomainSuffix:   "cluster.local",
			},
			want: "reading Service a/svc",
		},
		{
			name: "ServiceEntryState",
			snap: &model.Snapshot{
				ServiceEntries:    []model.Object{serviceEntry("a", "se", []string{"se.a"}, dubbo(20880))},
				ServiceEntryState: func(string, string) (*model.ServiceEntryState, error) { return nil, boom },
			},
			want: "ServiceEntry a/se",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Translate(testContext, reg, c.snap)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), c.want) || got != nil {
				t.Errorf("got %v, %v; want no translation and an error naming %q", got, err, c.want)
			}
			// Absence is an answer: the same lookups finding nothing translate.
			c.snap.KubeService = func(string, string) (*model.KubeService, error) { return nil, nil }
			c.snap.ServiceEntryState = func(string, string) (*model.ServiceEntryState, error) { return nil, nil }
			if got := translateOK(t, reg, c.snap); len(got.Filters) != 1 || len(got.Failed) != 0 {
				t.Errorf("objects absent: %d filters, failed %v; want one filter", len(got.Filters), got.Failed)
			}
		})
	}
}

// TestTranslatorSecretReadError: a Secret read that fails fails the translation and
// leaves the cache as it was: the next translation generates exactly what changed
// since the last good one.
func TestTranslatorSecretReadError(t *testing.T) {
	boom := errors.New("apiserver unavailable")
	var mu sync.Mutex
	var calls []string
	// Services named "reader" read Secret a/s and put its version in the filter.
	gen := generator.Func(func(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
		mu.Lock()
		calls = append(calls, svc.Key())
		mu.Unlock()
		ef := &model.EnvoyFilter{
			Name: patch.ObjectName(patch.Outbound, svc.Hosts[0], port.Number), Namespace: ctx.RootNamespace,
			Annotations: map[string]string{model.ServiceAnnotation: svc.Key()},
		}
		if svc.Name == "reader" {
			s := ctx.Secret("a", "s")
			if s == nil {
				return nil, errors.New("no Secret a/s")
			}
			ef.Annotations["secret"] = s.ResourceVersion
		}
		return []*model.EnvoyFilter{ef}, nil
	})
	called := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Sorted(slices.Values(calls))
		calls = nil
		return out
	}
	secret := &model.Secret{}
	secret.ResourceVersion = "7"
	var secretErr error
	snap := &model.Snapshot{
		ServiceEntries: []model.Object{
			serviceEntry("a", "reader", []string{"reader.a"}, dubbo(20880)),
			serviceEntry("a", "other", []string{"other.a"}, dubbo(20880)),
		},
		Secret: func(ns, name string) (*model.Secret, error) {
			if secretErr != nil {
				return nil, secretErr
			}
			if ns+"/"+name == "a/s" {
				return secret, nil
			}
			return nil, nil
		},
	}
	tr := NewTranslator(testContext, generator.Registry{model.Dubbo: gen})
	first, err := tr.Translate(snap)
	if err != nil || len(first.Failed) != 0 || first.Generated != 2 {
		t.Fatalf("first translation: %v, %v", first, err)
	}
	called()

	// a/other changes while Secrets cannot be read.
	snap.ServiceEntries[1] = serviceEntry("a", "other", []string{"other.a"}, dubbo(20881))
	secretErr = boom
	if got, err := tr.Translate(snap); !errors.Is(err, boom) || got != nil {
		t.Fatalf("Secret read failed: got %v, %v; want no translation and the read error", got, err)
	}
	called()

	// Secrets readable again: a/reader is reused from the first translation, a/other
	// (changed since) is generated.
	secretErr = nil
	got, err := tr.Translate(snap)
	if err != nil {
		t.Fatal(err)
	}
	if c := called(); !slices.Equal(c, []string{"a/other"}) || got.Generated != 1 || got.Reused != 1 {
		t.Errorf("generated %v (%d, reused %d), want a/other only", c, got.Generated, got.Reused)
	}
	readerKey := "istio-system/" + patch.ObjectName(patch.Outbound, "reader.a", 20880)
	if got.Filters[readerKey] != first.Filters[readerKey] || got.Filters[readerKey].Annotations["secret"] != "7" || len(got.Failed) != 0 {
		t.Errorf("a/reader's filter %v was not reused from the first translation (failed %v)", got.Filters[readerKey], got.Failed)
	}
	if _, ok := got.Filters["istio-system/"+patch.ObjectName(patch.Outbound, "other.a", 20881)]; !ok {
		t.Errorf("a/other's new port has no filter: %v", got.Filters)
	}
}

// Secrets come from the apiserver: a push reads each once, however many services
// name it, and again on the next push.
func TestEachSecretReadOncePerPush(t *testing.T) {
	reads := 0
	snap := &model.Snapshot{
		ServiceEntries: []model.Object{
			serviceEntry("a", "one", []string{"one.a"}, dubbo(20880)),
			serviceEntry("a", "two", []string{"two.a"}, dubbo(20880)),
			serviceEntry("a", "three", []string{"three.a"}, dubbo(20880)),
		},
		Secret: func(ns, name string) (*model.Secret, error) {
			reads++
			return &model.Secret{Namespace: ns, Name: name, ResourceVersion: "1"}, nil
		},
	}
	gen := generator.Func(func(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
		if ctx.Secret("a", "auth") == nil {
			return nil, errors.New("no Secret")
		}
		return []*model.EnvoyFilter{{Name: svc.Name, Namespace: svc.Namespace, Spec: &networking.EnvoyFilter{}}}, nil
	})
	tr := NewTranslator(testContext, generator.Registry{model.Dubbo: gen})
	for push := 1; push <= 2; push++ {
		if _, err := tr.Translate(snap); err != nil {
			t.Fatal(err)
		}
		if reads != push {
			t.Errorf("after push %d: the Secret was read %d times, want once a push", push, reads)
		}
	}
}
