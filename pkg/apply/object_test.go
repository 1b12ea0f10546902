package apply

import (
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
)

func TestObjectRoundTrip(t *testing.T) {
	if model.EnvoyFilterAPIVersion != clientnetworking.SchemeGroupVersion.String() {
		t.Fatalf("model writes EnvoyFilters as %s, the client as %s", model.EnvoyFilterAPIVersion, clientnetworking.SchemeGroupVersion)
	}
	ef := &model.EnvoyFilter{
		Name: "aeraki-outbound-a-1", Namespace: "istio-system", Labels: model.ManagedLabels(),
		Annotations: map[string]string{model.ServiceAnnotation: "ns/a"},
		Spec:        &networking.EnvoyFilter{Priority: 3},
	}
	obj := toObject(ef)
	if obj.APIVersion != model.EnvoyFilterAPIVersion || obj.Kind != "EnvoyFilter" {
		t.Errorf("type %s %s", obj.APIVersion, obj.Kind)
	}
	obj.Labels["extra"] = "x" // the object owns its maps
	if _, shared := ef.Labels["extra"]; shared {
		t.Error("toObject shares the EnvoyFilter's labels")
	}
	obj.ResourceVersion = "7"
	back := fromObject(obj)
	if !ef.UpToDate(back) || back.ResourceVersion != "7" || !proto.Equal(back.Spec, ef.Spec) {
		t.Errorf("round trip: %+v", back)
	}
}
