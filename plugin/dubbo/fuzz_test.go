package dubbo

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
)

// FuzzGenerate feeds arbitrary interface names, method and header matches, weights
// (two, of any sum) and ports through a VirtualService: the generator must never
// panic, and whatever it returns without an error must be a valid filter.
func FuzzGenerate(f *testing.F) {
	f.Add("org.example.Greeter", "sayHello", "say", "say.*", "user", "jason", int32(20), int32(80), uint32(20880), uint32(20880))
	f.Add("", "", "", "(", "", "", int32(0), int32(0), uint32(0), uint32(0))
	f.Add("x", "m", "p", "[a-z]+", "h", "", int32(-5), int32(105), uint32(65535), uint32(1))
	f.Add("x", "m", "p", "a", "h", "v", int32(2147483647), int32(2147483647), uint32(20880), uint32(20880))
	f.Fuzz(func(t *testing.T, iface, exact, prefix, regex, header, value string, weight, weight2 int32, port, target uint32) {
		generatortest.SkipInvalidUTF8(t, iface, exact, prefix, regex, header, value)
		svc := &model.Service{
			Name: "s", Namespace: "ns", Annotations: map[string]string{InterfaceAnnotation: iface},
			Hosts: []string{"s.ns.svc.cluster.local"}, Addresses: []string{"10.0.0.1"},
			WorkloadSelector: map[string]string{"app": "s"},
			Ports:            []*model.Port{{Number: port, Name: "tcp-dubbo", Protocol: model.Dubbo, TargetPort: target}},
			DestinationRules: []*model.Config[*networking.DestinationRule]{{Name: "s", Namespace: "ns", Spec: &networking.DestinationRule{
				Host: "s", Subsets: []*networking.Subset{{Name: "v1"}, {Name: "v2"}},
			}}},
			VirtualServices: []*model.Config[*networking.VirtualService]{{Name: "s", Namespace: "ns", Spec: &networking.VirtualService{
				Hosts: []string{"s"},
				Http: []*networking.HTTPRoute{{
					Match: []*networking.HTTPMatchRequest{
						{Method: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: exact}}},
						{Method: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: prefix}}},
						{Method: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: regex}},
							Headers: map[string]*networking.StringMatch{header: {MatchType: &networking.StringMatch_Exact{Exact: value}}}},
					},
					Route: []*networking.HTTPRouteDestination{
						{Destination: &networking.Destination{Host: "s", Subset: "v1"}, Weight: weight},
						{Destination: &networking.Destination{Host: "s", Subset: "v2"}, Weight: weight2},
					},
				}},
			}}},
		}
		efs, err := New().Generate(generatortest.Context, svc, svc.Ports[0])
		generatortest.CheckResult(t, efs, err)
	})
}
