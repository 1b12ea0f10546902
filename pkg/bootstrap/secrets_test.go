package bootstrap

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/kube"
)

// Pushes that read Secrets again are triggered only while a Redis object names one.
func TestNamesSecrets(t *testing.T) {
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	meta := metav1.ObjectMeta{Name: "x", Namespace: "shop"}
	plain := &redisv1alpha1.RedisService{ObjectMeta: meta, Spec: redisspec.RedisServiceSpec{Host: []string{"cache"},
		Settings: &redisspec.RedisSettings{Auth: &redisspec.Auth{Plain: &redisspec.PlainAuth{Password: "p"}}}}}
	fromSecret := &redisv1alpha1.RedisDestination{ObjectMeta: meta, Spec: redisspec.RedisDestinationSpec{Host: "cache",
		TrafficPolicy: &redisspec.TrafficPolicy{ConnectionPool: &redisspec.ConnectionPoolSettings{Redis: &redisspec.RedisConnectionSettings{
			Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "auth"}},
		}}}}}
	for _, c := range []struct {
		name string
		objs []client.Object
		want bool
	}{
		{"none", nil, false},
		{"plain auth only", []client.Object{plain}, false},
		{"a RedisDestination naming a Secret", []client.Object{plain, fromSecret}, true},
	} {
		cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(c.objs...).Build()
		got, err := namesSecrets(t.Context(), cache)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}
