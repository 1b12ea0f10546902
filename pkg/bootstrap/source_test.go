package bootstrap

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/go-logr/logr/testr"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apply"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/plugin"
)

// mesh is two Redis Services, a RedisService routing a prefix of the first to the
// second with auth from a Secret.
const mesh = `
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: redis}
spec:
  clusterIP: 10.0.0.10
  selector: {app: cache}
  ports: [{name: tcp-redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: users, namespace: redis}
spec:
  clusterIP: 10.0.0.11
  selector: {app: users}
  ports: [{name: tcp-redis, port: 6379}]
---
apiVersion: v1
kind: Secret
metadata: {name: auth, namespace: redis}
stringData: {password: secret-password}
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: redis}
spec:
  host: [cache]
  redis: [{match: {key: {prefix: 'u:'}}, route: {host: users}}]
  settings: {auth: {secret: {name: auth}}}
`

// istiodConfig serves the ServiceEntries istiod would, synced.
// istiodConfig is what istiod shows: ses, and as changes, changes (or whole).
type istiodConfig struct {
	ses     []model.Object
	changes []model.Change
	whole   bool
}

func (c *istiodConfig) HasSynced() bool { return true }

func (c *istiodConfig) Snapshot() (ses, vss, drs []model.Object) { return c.ses, nil, nil }

func (c *istiodConfig) Changes() ([]model.Change, bool) {
	changes := c.changes
	c.changes = nil
	return changes, c.whole
}

func (c *istiodConfig) Get(namespace, name string) *model.Object {
	for i := range c.ses {
		if c.ses[i].Namespace == namespace && c.ses[i].Name == name {
			return &c.ses[i]
		}
	}
	return nil
}

func (c *istiodConfig) ExportDefaults() model.ExportDefaults { return model.ExportDefaults{} }

func (c *istiodConfig) SetHiddenServices([]model.Object) {}

func (c *istiodConfig) WorkloadEntries() []model.Object { return nil }

// failing makes reads of one kind fail while set, with an error other than NotFound.
type failing struct {
	list atomic.Pointer[string] // the list type's name, e.g. "RedisServiceList"
	get  atomic.Pointer[string] // the object type's name, e.g. "Secret"
}

var errUnavailable = errors.New("the cache is unavailable")

// TestPushFromAFailedReadWritesNothing: a List or Get of the translation's input that
// fails for any reason but absence fails the push, and nothing is written; without
// the failure the same push would rewrite the cache service's filter without its
// route (a RedisService list that failed read as "no RedisServices"), or with stale
// settings.
func TestPushFromAFailedReadWritesNothing(t *testing.T) {
	objs := &manifest.Objects{}
	if errs := objs.Decode(strings.NewReader(mesh), "mesh"); len(errs) > 0 {
		t.Fatal(errs)
	}
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	var fail failing
	var writes atomic.Int64
	initial := []client.Object{}
	for _, s := range objs.Services {
		initial = append(initial, s)
	}
	for _, s := range objs.Secrets {
		initial = append(initial, s)
	}
	for _, rs := range objs.RedisServices {
		initial = append(initial, rs)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithIndex(&clientnetworking.EnvoyFilter{}, apply.OwnerIndex, apply.IndexOwner).WithObjects(initial...).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if name := fail.list.Load(); name != nil && kindOf(list) == *name {
				return errUnavailable
			}
			return c.List(ctx, list, opts...)
		},
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if name := fail.get.Load(); name != nil && kindOf(obj) == *name {
				return errUnavailable
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			writes.Add(1)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			writes.Add(1)
			return c.Update(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			writes.Add(1)
			return c.Delete(ctx, obj, opts...)
		},
	}).Build()

	const domain = "cluster.local"
	src := &source{config: &istiodConfig{ses: objs.Snapshot(domain).ServiceEntries, whole: true}, cache: c, secrets: c, domainSuffix: domain}
	ctrl := push.NewController(push.ControllerOptions{
		Context:  generator.Context{RootNamespace: "istio-system", DomainSuffix: domain},
		Registry: plugin.Registry(plugin.Options{}),
		Source:   src,
		Applier:  &apply.Applier{Cache: c, Client: c, Live: c, Workers: 1, Log: testr.New(t)},
		Log:      testr.New(t),
	})
	ctx := t.Context()
	if err := ctrl.Push(ctx); err != nil {
		t.Fatalf("first push: %v", err)
	}
	outbound := func() string {
		t.Helper()
		ef := &clientnetworking.EnvoyFilter{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: "aeraki-outbound-cache.redis.svc.cluster.local-6379"}, ef); err != nil {
			t.Fatalf("reading the outbound EnvoyFilter of cache: %v", err)
		}
		js, err := ef.Spec.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return string(js)
	}
	before := outbound()
	for _, want := range []string{`"prefix":"u:"`, "secret-password"} {
		if !strings.Contains(before, want) {
			t.Fatalf("the first push's outbound filter lacks %s: %s", want, before)
		}
	}
	written := writes.Load()

	for _, c := range []struct{ list, get string }{
		{list: "RedisServiceList"},
		{get: "Secret"},
		{get: "Service"},
	} {
		name := c.list + c.get
		t.Run(name, func(t *testing.T) {
			if c.list != "" {
				fail.list.Store(&c.list)
				defer fail.list.Store(nil)
			} else {
				fail.get.Store(&c.get)
				defer fail.get.Store(nil)
			}
			ctrl.Resync() // generate everything afresh, so that every read happens
			err := ctrl.Push(ctx)
			if !errors.Is(err, errUnavailable) {
				t.Errorf("push with a failing read of %s: %v, want the read's error", name, err)
			}
			if n := writes.Load() - written; n != 0 {
				t.Errorf("the push wrote %d times from a failed read of %s", n, name)
			}
			if after := outbound(); after != before {
				t.Errorf("the outbound filter changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	// Once the reads work again the push succeeds and has nothing to write.
	ctrl.Resync()
	if err := ctrl.Push(ctx); err != nil {
		t.Fatalf("push after the failures: %v", err)
	}
	if n := writes.Load() - written; n != 0 {
		t.Errorf("a push of the unchanged config wrote %d times", n)
	}
}

// kindOf names an object's or list's Go type: "Secret", "RedisServiceList".
func kindOf(obj any) string {
	switch obj.(type) {
	case *corev1.Secret:
		return "Secret"
	case *corev1.Service:
		return "Service"
	case *redisv1alpha1.RedisServiceList:
		return "RedisServiceList"
	case *redisv1alpha1.RedisDestinationList:
		return "RedisDestinationList"
	}
	return ""
}

// A Secret the controller may not read is an answer, not a failed read: the
// translation goes on and tells the Redis object which grant to make.
func TestSecretOfANamespaceThatGrantedNothing(t *testing.T) {
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithIndex(&clientnetworking.EnvoyFilter{}, apply.OwnerIndex, apply.IndexOwner).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, key.Name, errors.New("no RoleBinding"))
		},
	}).Build()
	src := &source{secrets: c}
	got, err := src.secret("shop", "auth")
	if err != nil || got == nil || !got.Forbidden || got.Namespace != "shop" || got.Name != "auth" || len(got.Data) != 0 {
		t.Errorf("forbidden Secret: %+v, %v; want it marked forbidden, without data or error", got, err)
	}
	if v := model.SecretVersion(got); v == "" {
		t.Error("a forbidden Secret has no version: a grant made later would not regenerate its service")
	}
}

// Changes turns what the informers told into the objects as they are now: the entry
// of a Kubernetes Service that istiod does not show (ours while it is hidden,
// istiod's once istiod shows it, gone when neither), Redis objects, and the keys of
// the services whose apiserver state changed.
func TestChangesAsTheyAreNow(t *testing.T) {
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	hidden := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", Annotations: map[string]string{"networking.istio.io/exportTo": "shop"}},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.0.0.1", Ports: []corev1.ServicePort{{Name: "tcp-dubbo", Port: 20880}}},
	}
	rs := &redisv1alpha1.RedisService{ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "shop"}}
	rs.Spec.Host = []string{"cache"}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(hidden, rs).Build()
	istiod := &istiodConfig{}
	src := &source{config: istiod, cache: c, secrets: c, domainSuffix: "cluster.local", rootNamespace: "istio-system"}
	const entry = "shop/synthetic-orders"
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.ServiceEntries) != 1 || snap.ServiceEntries[0].Name != "synthetic-orders" {
		t.Fatalf("snapshot entries %v, want ours of the hidden Service", snap.ServiceEntries)
	}
	changes := func(step string) model.Delta {
		t.Helper()
		d, err := src.Changes()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return d
	}
	one := func(step string, d model.Delta, kind model.ObjectKind, key string, deleted bool) model.Object {
		t.Helper()
		if len(d.Objects) != 1 {
			t.Fatalf("%s: %d changes, want one", step, len(d.Objects))
		}
		got := d.Objects[0]
		if got.Kind != kind || got.Object.Namespace+"/"+got.Object.Name != key || got.Deleted != deleted {
			t.Fatalf("%s: change of kind %d %s/%s deleted %v; want kind %d %s deleted %v", step, got.Kind,
				got.Object.Namespace, got.Object.Name, got.Deleted, kind, key, deleted)
		}
		return got.Object
	}

	if d := changes("nothing told"); len(d.Objects)+len(d.Services)+len(d.Secrets) > 0 || d.RereadSecrets || d.Whole {
		t.Fatalf("nothing told: %+v", d)
	}

	// Exported to every namespace: no longer ours to add, not shown by istiod yet.
	hidden.Annotations = nil
	if err := c.Update(t.Context(), hidden); err != nil {
		t.Fatal(err)
	}
	src.changed.kubeService("shop", "orders")
	d := changes("exported")
	one("exported", d, model.ServiceEntryKind, entry, true)
	if !slices.Equal(d.Services, []string{entry}) {
		t.Errorf("exported: services %v, want %s", d.Services, entry)
	}

	// istiod shows it: istiod's entry.
	shown := model.Object{Name: "synthetic-orders", Namespace: "shop", ResourceVersion: "7", Spec: &networking.ServiceEntry{Hosts: []string{"orders.shop.svc.cluster.local"}}}
	istiod.ses = []model.Object{shown}
	istiod.changes = []model.Change{{Kind: model.ServiceEntryKind, Object: shown}}
	if got := one("shown by istiod", changes("shown by istiod"), model.ServiceEntryKind, entry, false); got.ResourceVersion != "7" {
		t.Errorf("shown by istiod: resource version %q, want istiod's 7", got.ResourceVersion)
	}

	// Hidden again, and istiod drops it: ours again.
	hidden.Annotations = map[string]string{"networking.istio.io/exportTo": "."}
	if err := c.Update(t.Context(), hidden); err != nil {
		t.Fatal(err)
	}
	istiod.ses = nil
	istiod.changes = []model.Change{{Kind: model.ServiceEntryKind, Object: model.Object{Name: shown.Name, Namespace: shown.Namespace}, Deleted: true}}
	src.changed.kubeService("shop", "orders")
	if got := one("hidden again", changes("hidden again"), model.ServiceEntryKind, entry, false); got.ResourceVersion == "7" {
		t.Error("hidden again: istiod's entry kept")
	}

	// A Redis object, then its deletion.
	ref := model.ObjectRef{Kind: model.KindRedisService, Namespace: "shop", Name: "cache"}
	src.changed.redisObject(ref)
	one("RedisService", changes("RedisService"), model.RedisServiceKind, "shop/cache", false)
	if err := c.Delete(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	src.changed.redisObject(ref)
	one("RedisService deleted", changes("RedisService deleted"), model.RedisServiceKind, "shop/cache", true)

	// A ServiceEntry's apiserver copy, and the Secret poll.
	src.changed.serviceEntry("shop", "payments")
	src.changed.secretsPolled()
	if d := changes("copy and poll"); !slices.Equal(d.Services, []string{"shop/payments"}) || !d.RereadSecrets || len(d.Objects) != 0 {
		t.Errorf("copy and poll: %+v, want the service's key and the Secrets read again", d)
	}

	// The mesh's defaults changed: the whole config.
	istiod.whole = true
	if d := changes("mesh defaults"); !d.Whole {
		t.Errorf("mesh defaults: %+v, want the whole config", d)
	}
}
