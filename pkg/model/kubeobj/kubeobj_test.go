package kubeobj

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/model"
)

func TestSecretFoldsStringData(t *testing.T) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "auth", Namespace: "shop", ResourceVersion: "4"},
		Data:       map[string][]byte{"password": []byte("old"), "username": []byte("app")},
		StringData: map[string]string{"password": "new"},
	}
	want := &model.Secret{Name: "auth", Namespace: "shop", ResourceVersion: "4",
		Data: map[string][]byte{"password": []byte("new"), "username": []byte("app")}}
	if diff := cmp.Diff(want, Secret(s)); diff != "" {
		t.Errorf("Secret (-want +got):\n%s", diff)
	}
	if string(s.Data["password"]) != "old" {
		t.Error("folding stringData changed the Secret's own data")
	}
	if Secret(nil) != nil {
		t.Error("Secret(nil) is not nil")
	}
}

func TestServiceTargetPorts(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Port: 20880, TargetPort: intstr.FromInt32(20881)},
			{Port: 20890},
			{Port: 20900, TargetPort: intstr.FromString("dubbo")},
			{Port: 20910, TargetPort: intstr.FromInt32(0)},
		}},
	}
	got := Service(svc)
	want := &model.KubeService{ResourceVersion: "9", Annotations: map[string]string{"a": "b"},
		TargetPorts: map[uint32]uint32{20880: 20881, 20890: 20890, 20900: 0, 20910: 20910}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Service (-want +got):\n%s", diff)
	}
	for port, target := range map[uint32]uint32{20880: 20881, 20900: 0, 12345: 12345} {
		if n := got.TargetPort(port); n != target {
			t.Errorf("TargetPort(%d) = %d, want %d", port, n, target)
		}
	}
	if Service(nil) != nil {
		t.Error("Service(nil) is not nil")
	}
}

func TestRedisObjectsKeepIdentityAndGeneration(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "cache", Namespace: "shop", ResourceVersion: "3", Generation: 5}
	rs := &redisv1alpha1.RedisService{ObjectMeta: meta}
	rs.Spec.Host = []string{"cache"}
	rd := &redisv1alpha1.RedisDestination{ObjectMeta: meta}
	rd.Spec.Host = "cache"
	for _, c := range []struct {
		got  model.Object
		spec any
	}{{RedisService(rs), &rs.Spec}, {RedisDestination(rd), &rd.Spec}} {
		if c.got.Name != "cache" || c.got.Namespace != "shop" || c.got.ResourceVersion != "3" || c.got.Generation != 5 || c.got.Spec != c.spec {
			t.Errorf("got %+v, want the object's identity, version, generation and its own spec", c.got)
		}
	}
}
