package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/kube"
)

const redisFilter = "envoy.filters.network.redis_proxy"

// TestRedis runs the whole Redis path: a Service with a tcp-redis port, a RedisService
// and a RedisDestination with a Secret, through the manager's caches and reconcilers to
// the EnvoyFilter, the sidecar's listener and the objects' Ready conditions; then a
// Secret deleted by mistake, which must cost the service nothing already applied.
func TestRedis(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	c := e.redisClient(t)
	create := func(obj client.Object) {
		t.Helper()
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	create(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "cache-servers", Namespace: appNS},
		StringData: map[string]string{"password": "e2e-s3cret"},
	})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "cache"},
			Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
	create(svc)
	opTimeout := redisspec.Duration{Duration: 2 * time.Second}
	create(&redisv1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
		Spec: redisspec.RedisServiceSpec{
			Host:     []string{"cache"},
			Settings: &redisspec.RedisSettings{OpTimeout: &opTimeout, ReadPolicy: redisspec.ReadPolicyPreferReplica},
		},
	})
	create(&redisv1alpha1.RedisDestination{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
		Spec: redisspec.RedisDestinationSpec{
			Host: "cache",
			TrafficPolicy: &redisspec.TrafficPolicy{ConnectionPool: &redisspec.ConnectionPoolSettings{
				Redis: &redisspec.RedisConnectionSettings{
					Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "cache-servers"}},
				},
			}},
		},
	})
	create(&redisv1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: appNS},
		Spec:       redisspec.RedisServiceSpec{Host: []string{"no-such-cache"}},
	})

	host := "cache." + appNS + ".svc.cluster.local"
	outbound := "aeraki-outbound-" + host + "-6379"
	e.waitEnvoyFilter(t, rootNS, outbound, true)
	// A push may come between the Service and the Redis objects reaching the controller:
	// the filter's first version can be the one of a Service without them.
	wants := []string{redisFilter, "opTimeout: 2s", "readPolicy: PREFER_REPLICA", "applyTo: CLUSTER", "e2e-s3cret"}
	spec := e.waitEnvoyFilterYAML(t, outbound, wants...)
	for _, want := range wants {
		if !strings.Contains(spec, want) {
			t.Errorf("outbound EnvoyFilter lacks %q:\n%s", want, spec)
		}
	}
	var created corev1.Service
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &created); err != nil {
		t.Fatal(err)
	}
	e.waitListenerFilter(t, created.Spec.ClusterIP+"_6379", redisFilter)

	waitReady(t, c, &redisv1alpha1.RedisService{}, "cache", metav1.ConditionTrue, redisspec.ReasonAccepted)
	waitReady(t, c, &redisv1alpha1.RedisDestination{}, "cache", metav1.ConditionTrue, redisspec.ReasonAccepted)
	waitReady(t, c, &redisv1alpha1.RedisService{}, "nowhere", metav1.ConditionFalse, redisspec.ReasonNoMatchingService)

	// The Secret goes: the RedisDestination says so, and the EnvoyFilters applied
	// before stay exactly as they were.
	if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cache-servers", Namespace: appNS}}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, &redisv1alpha1.RedisDestination{}, "cache", metav1.ConditionFalse, redisspec.ReasonSecretNotFound)
	if got := e.envoyFilterYAML(t, rootNS, outbound); got != spec {
		t.Errorf("the EnvoyFilter changed after its Secret went missing:\n%s", got)
	}
}

// redisClient is a client of the control plane that knows our Redis types.
func (e *env) redisClient(t *testing.T) client.Client {
	t.Helper()
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(e.cp.RestConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// envoyFilterYAML returns an EnvoyFilter's spec as YAML.
func (e *env) envoyFilterYAML(t *testing.T, namespace, name string) string {
	t.Helper()
	ef, err := e.istio.NetworkingV1alpha3().EnvoyFilters(namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(&ef.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// waitEnvoyFilterYAML waits until an EnvoyFilter of the root namespace has a spec, as
// YAML, that contains every one of wants, and returns the spec it read last.
func (e *env) waitEnvoyFilterYAML(t *testing.T, name string, wants ...string) string {
	t.Helper()
	namespace := rootNS
	var spec string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		spec = e.envoyFilterYAML(t, namespace, name)
		for _, want := range wants {
			if !strings.Contains(spec, want) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Logf("EnvoyFilter %s/%s never carried all of %q: %v", namespace, name, wants, err)
	}
	return spec
}

// waitReady waits until the Redis object's Ready condition has the status and reason,
// for its current generation.
func waitReady(t *testing.T, c client.Client, obj client.Object, name string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	var last *metav1.Condition
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: appNS, Name: name}, obj); err != nil {
			return false, err
		}
		var conds []metav1.Condition
		var observed int64
		switch o := obj.(type) {
		case *redisv1alpha1.RedisService:
			conds, observed = o.Status.Conditions, o.Status.ObservedGeneration
		case *redisv1alpha1.RedisDestination:
			conds, observed = o.Status.Conditions, o.Status.ObservedGeneration
		}
		last = meta.FindStatusCondition(conds, redisv1alpha1.ConditionReady)
		return last != nil && last.Status == status && last.Reason == reason &&
			observed == obj.GetGeneration() && last.ObservedGeneration == obj.GetGeneration(), nil
	})
	if err != nil {
		t.Fatalf("%T %s never got Ready=%s %s; last condition: %+v", obj, name, status, reason, last)
	}
}
