package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// storedByAeraki is a RedisService as Aeraki's CRD let it be stored: a duration
// this API cannot read.
const storedByAeraki = `
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: old, namespace: dubbo}
spec:
  host: [old-cache]
  settings: {opTimeout: 1d}
`

// aerakiForm is a RedisService written as Aeraki's users write one: percentages as
// {value: n}, a fault without a type (DELAY), the Secret's keys as passwordField
// and usernameField.
const aerakiForm = `
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: cache, namespace: dubbo}
spec:
  host: [cache]
  settings:
    auth: {secret: {name: cache-clients, passwordField: pw, usernameField: user}}
  redis:
  - route: {host: cache}
    mirror:
    - route: {host: cache}
      percentage: {value: 12.5}
  faults:
  - delay: 10ms
    percentage: {value: 5}
`

// TestAerakiObjects: a RedisService stored under another schema (Aeraki's, before
// our CRD replaced it) that this API cannot read is reported Unreadable, and does
// not stop the controller reading the others of its kind; a RedisService in
// Aeraki's form is taken by our CRD, made Ready, and its filter carries the mirror
// and fault fractions and the credentials from the keys it names.
func TestAerakiObjects(t *testing.T) {
	e := startControlPlane(t)
	ctx := t.Context()
	c := e.redisClient(t)
	crds, err := apiextensions.NewForConfig(e.cp.RestConfig)
	if err != nil {
		t.Fatal(err)
	}

	// Stored under a schema that takes any spec, then our CRD back.
	old := unstructuredYAML(t, storedByAeraki)
	ours := setSpecSchema(t, crds, "redisservices.redis.aeraki.io", &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrTo(true)})
	waitCreate(t, c, old, true)
	setSpecSchema(t, crds, "redisservices.redis.aeraki.io", ours)
	waitCreate(t, c, unstructuredYAML(t, strings.Replace(storedByAeraki, "name: old", "name: refused", 1)), false)

	for _, obj := range []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cache-clients", Namespace: appNS}, StringData: map[string]string{"pw": "aeraki-form-s3cret", "user": "app"}},
		redisService("cache"), redisService("old-cache"),
		unstructuredYAML(t, aerakiForm),
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
	}
	e.runController(t, "controller", e.cp.RestConfig, e.options())

	waitReady(t, c, &redisv1alpha1.RedisService{}, "cache", metav1.ConditionTrue, redisspec.ReasonAccepted)
	outbound := "aeraki-outbound-cache." + appNS + ".svc.cluster.local-6379"
	// 12.5% and 5% in millionths; the Secret's named keys.
	wants := []string{"numerator: 125000", "numerator: 50000", "inlineString: aeraki-form-s3cret", "inlineString: app"}
	spec := e.waitEnvoyFilterYAML(t, outbound, wants...)
	for _, want := range wants {
		if !strings.Contains(spec, want) {
			t.Errorf("outbound EnvoyFilter lacks %q:\n%s", want, spec)
		}
	}
	waitReady(t, c, &redisv1alpha1.RedisService{}, "old", metav1.ConditionFalse, redisspec.ReasonUnreadable)
	waitEvent(t, e, "old", redisspec.ReasonUnreadable)
}

func redisService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
}

func unstructuredYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func ptrTo[T any](v T) *T { return &v }

// setSpecSchema gives the CRD's spec the schema s and returns the one it had.
func setSpecSchema(t *testing.T, crds apiextensions.Interface, name string, s *apiextensionsv1.JSONSchemaProps) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	var before apiextensionsv1.JSONSchemaProps
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		crd, err := crds.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		props := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties
		before = props["spec"]
		props["spec"] = *s
		_, err = crds.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{})
		return err == nil, nil // a conflict: read it again
	})
	if err != nil {
		t.Fatalf("updating CRD %s: %v", name, err)
	}
	return &before
}

// waitCreate waits until the API server takes obj (accepted) or refuses it for its
// spec (not accepted): a CRD's new schema takes effect a moment after its update.
func waitCreate(t *testing.T, c client.Client, obj *unstructured.Unstructured, accepted bool) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		o := obj.DeepCopy()
		if accepted {
			last = c.Create(ctx, o)
			return last == nil, nil
		}
		last = c.Create(ctx, o, client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "opTimeout"), nil
	})
	if err != nil {
		t.Fatalf("creating %s (accepted %v): last answer %v", obj.GetName(), accepted, last)
	}
}

// waitEvent waits for an Event on the named object of the application namespace with
// the reason.
func waitEvent(t *testing.T, e *env, name, reason string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		evs, err := e.kube.EventsV1().Events(appNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Name == name && ev.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on %s: %v", reason, name, err)
	}
}
