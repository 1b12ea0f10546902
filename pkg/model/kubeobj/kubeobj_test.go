package kubeobj

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

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

// A trimmed slice gives the same endpoints, keeps what the cache indexes it by,
// and holds nothing else; trimming it again changes nothing.
func TestTrimEndpointSlice(t *testing.T) {
	ready, notReady := true, false
	full := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "cache-abc", Namespace: "shop", UID: "u1", ResourceVersion: "7", Generation: 3,
			Labels:          map[string]string{discoveryv1.LabelServiceName: "cache", corev1.IsHeadlessService: ""},
			Annotations:     map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: "cache"}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](6379)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready},
				Hostname: ptr.To("cache-0"), NodeName: ptr.To("node-1"), Zone: ptr.To("a"),
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "cache-0"}},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady, Terminating: &ready}},
			{Addresses: []string{"10.0.0.1"}},
		},
	}
	before := Endpoints([]discoveryv1.EndpointSlice{*full.DeepCopy()})
	out, err := TrimEndpointSlice(full)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := out.(*discoveryv1.EndpointSlice)
	if got := Endpoints([]discoveryv1.EndpointSlice{*trimmed}); !slices.Equal(got, before) || len(got) != 2 {
		t.Errorf("endpoints of the trimmed slice %v, want %v (two ready)", got, before)
	}
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "cache-abc", Namespace: "shop", UID: "u1", ResourceVersion: "7",
			Labels: map[string]string{discoveryv1.LabelServiceName: "cache", corev1.IsHeadlessService: ""}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
			{Addresses: []string{"10.0.0.1"}},
		},
	}
	if diff := cmp.Diff(want, trimmed); diff != "" {
		t.Errorf("trimmed slice (-want +got):\n%s", diff)
	}
	again, err := TrimEndpointSlice(trimmed.DeepCopy())
	if err != nil || !cmp.Equal(again, want) {
		t.Errorf("trimming twice: %v, %v", again, err)
	}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"a": "b"}}}
	if out, err := TrimEndpointSlice(other); err != nil || out != any(other) || other.Annotations["a"] != "b" {
		t.Errorf("another object was changed: %v, %v", out, err)
	}
}
