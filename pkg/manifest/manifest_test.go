package manifest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"aeraki.io/aeraki/pkg/model"
)

const kubeService = `apiVersion: v1
kind: Service
metadata:
  name: provider
  namespace: dubbo
  annotations: {interface: org.example.Provider}
spec:
  clusterIP: 10.96.0.20
  selector: {app: provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: 20881}
  - {name: tcp-dubbo-named, port: 20882, targetPort: dubbo}
  - {name: http, port: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
`

func TestKubernetesServiceAsIstiodShowsIt(t *testing.T) {
	objs := &Objects{}
	if errs := objs.Decode(strings.NewReader(kubeService), "in"); len(errs) > 0 {
		t.Fatal(errs)
	}
	services, err := model.BuildServices(objs.Snapshot("cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 {
		t.Fatalf("got %d services, want 1", len(services))
	}
	got := services[0]
	want := &model.Service{
		Name:             "synthetic-provider",
		Namespace:        "dubbo",
		Annotations:      map[string]string{"interface": "org.example.Provider"},
		Hosts:            []string{"provider.dubbo.svc.cluster.local"},
		Addresses:        []string{"10.96.0.20"},
		WorkloadSelector: map[string]string{"app": "provider"},
		Synthetic:        true,
		Ports: []*model.Port{
			{Number: 20880, Name: "tcp-dubbo", Protocol: model.Dubbo, TargetPort: 20881},
			{Number: 20882, Name: "tcp-dubbo-named", Protocol: model.Dubbo}, // named target port: unknown
		},
	}
	// The version is a fingerprint (see model.Service.Version), checked in pkg/model.
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(model.Service{}, "Version")); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}
	if got.Version == "" {
		t.Error("no version")
	}
	if got.Kind() != "Service" || got.ObjectName() != "provider" {
		t.Errorf("reported as %s %s", got.Kind(), got.ObjectName())
	}
}

func TestDecodeErrorsNameTheDocument(t *testing.T) {
	objs := &Objects{}
	in := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a]}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b}\nspec: {hostz: [b]}\n"
	errs := objs.Decode(strings.NewReader(in), "file.yaml")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "file.yaml: document 2") || !strings.Contains(errs[0].Error(), "default/b") {
		t.Fatalf("errors = %v", errs)
	}
	if len(objs.ServiceEntries) != 1 || objs.ServiceEntries[0].Name != "a" {
		t.Fatalf("the good document was not kept: %v", objs.ServiceEntries)
	}
}

func TestVirtualServiceWithoutHosts(t *testing.T) {
	objs := &Objects{}
	errs := objs.Decode(strings.NewReader("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns1}\nspec: {http: []}\n"), "f")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "VirtualService ns1/v has no hosts") {
		t.Fatalf("errors = %v", errs)
	}
}

const redisDocs = `apiVersion: v1
kind: Service
metadata: {name: cache, namespace: shop}
spec:
  clusterIP: 10.96.0.30
  selector: {app: cache}
  ports:
  - {name: tcp-redis, port: 6379}
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: shop}
spec:
  host: [cache]
  settings:
    auth: {secret: {name: cache-auth}}
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: cache, namespace: shop}
spec:
  host: cache.shop.svc.cluster.local
  trafficPolicy: {connectionPool: {redis: {mode: CLUSTER}}}
---
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: elsewhere, namespace: other}
spec:
  host: [cache]
---
apiVersion: v1
kind: Secret
metadata: {name: cache-auth, namespace: shop}
data: {password: czNjcjN0}
stringData: {username: app}
`

func TestRedisObjectsBindByHost(t *testing.T) {
	objs := &Objects{}
	if errs := objs.Decode(strings.NewReader(redisDocs), "in"); len(errs) > 0 {
		t.Fatal(errs)
	}
	snap := objs.Snapshot("cluster.local")
	services, err := model.BuildServices(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 {
		t.Fatalf("got %d services, want 1", len(services))
	}
	svc := services[0]
	// The short host of other/elsewhere means cache.other.svc.cluster.local.
	if len(svc.RedisServices) != 1 || svc.RedisServices[0].Name != "cache" || svc.RedisServices[0].Spec.Settings.Auth.Secret.Name != "cache-auth" {
		t.Errorf("RedisServices = %+v", svc.RedisServices)
	}
	if len(svc.RedisDestinations) != 1 || svc.RedisDestinations[0].Spec.TrafficPolicy.ConnectionPool.Redis.Mode != "CLUSTER" {
		t.Errorf("RedisDestinations = %+v", svc.RedisDestinations)
	}
	secret, err := snap.Secret("shop", "cache-auth")
	if err != nil || secret == nil {
		t.Fatalf("Secret shop/cache-auth: %v, %v", secret, err)
	}
	// As the API server does: data is base64, stringData is folded into data.
	if got := string(secret.Data["password"]); got != "s3cr3t" {
		t.Errorf("password = %q", got)
	}
	if got := string(secret.Data["username"]); got != "app" {
		t.Errorf("username = %q", got)
	}
	if secret, err := snap.Secret("other", "cache-auth"); err != nil || secret != nil {
		t.Errorf("Secret other/cache-auth: %v, %v; want none and no error (a Secret in another namespace must not be found)", secret, err)
	}
}

func TestRedisObjectsAreReadStrictly(t *testing.T) {
	objs := &Objects{}
	in := "apiVersion: redis.aeraki.io/v1alpha1\nkind: RedisService\nmetadata: {name: r, namespace: ns}\nspec: {host: [a], setings: {}}\n"
	errs := objs.Decode(strings.NewReader(in), "f")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "RedisService ns/r") || !strings.Contains(errs[0].Error(), "setings") {
		t.Fatalf("errors = %v", errs)
	}
	// A value this API cannot read is the object's Unreadable, as in the cluster.
	objs = &Objects{}
	in = "apiVersion: redis.aeraki.io/v1alpha1\nkind: RedisService\nmetadata: {name: r, namespace: ns}\nspec: {host: [a], settings: {opTimeout: 1d}}\n"
	if errs := objs.Decode(strings.NewReader(in), "f"); len(errs) != 0 || len(objs.RedisServices) != 1 || objs.RedisServices[0].Spec.Unreadable == "" {
		t.Fatalf("an unreadable value: errors %v, objects %+v", errs, objs.RedisServices)
	}
}

func TestSecretErrorsDoNotQuoteData(t *testing.T) {
	objs := &Objects{}
	in := "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ndata: {password: not-base64-hunter2}\n"
	errs := objs.Decode(strings.NewReader(in), "f")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "Secret ns/s") || strings.Contains(errs[0].Error(), "hunter2") {
		t.Fatalf("errors = %v", errs)
	}
}

// A path that is not a regular file (a device behind a symlink, which would be read
// for ever) is refused with an error naming it; the other files are read.
func TestReadPathsReadsRegularFilesOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	good := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: good, namespace: ns}\nspec: {hosts: [good.example]}\n"
	if err := os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	objs, errs := ReadPaths([]string{dir})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "zero.yaml is not a regular file") {
		t.Errorf("errors %v, want one naming zero.yaml as not a regular file", errs)
	}
	if len(objs.ServiceEntries) != 1 {
		t.Errorf("%d ServiceEntries read, want the good file's", len(objs.ServiceEntries))
	}
}

// A ServiceEntry's status is read for its addresses: fields a newer istiod writes are
// no error, an address that is not one is, naming the object.
func TestServiceEntryStatus(t *testing.T) {
	objs := &Objects{}
	in := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: ns}\nspec: {hosts: [a.example]}\n" +
		"status: {addresses: [{value: 240.240.0.1, host: a.example}], futureField: 1}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b, namespace: ns}\nspec: {hosts: [b.example]}\n" +
		"status: {addresses: 240.240.0.2}\n"
	errs := objs.Decode(strings.NewReader(in), "file.yaml")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "ServiceEntry ns/b: status") {
		t.Fatalf("errors = %v", errs)
	}
	state, err := objs.Snapshot("cluster.local").ServiceEntryState("ns", "a")
	if err != nil || state == nil {
		t.Fatalf("state of ns/a: %v, %v", state, err)
	}
	if want := []model.HostAddress{{Host: "a.example", Address: "240.240.0.1"}}; !slices.Equal(state.Addresses, want) {
		t.Errorf("addresses %v, want %v", state.Addresses, want)
	}
}
