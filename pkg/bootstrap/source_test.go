package bootstrap

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr/testr"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
type istiodConfig struct{ ses []model.Object }

func (c *istiodConfig) HasSynced() bool { return true }

func (c *istiodConfig) Snapshot() (ses, vss, drs []model.Object) { return c.ses, nil, nil }

// Changes says every push to take the whole config: the tests here read it whole.
func (c *istiodConfig) Changes() ([]model.Change, bool) { return nil, true }

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
	src := &source{config: &istiodConfig{ses: objs.Snapshot(domain).ServiceEntries}, cache: c, secrets: c, domainSuffix: domain}
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
