package thrift

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate/translatetest"
)

func TestGolden(t *testing.T) {
	for _, name := range []string{
		"basic",              // one VIP, workload selector, no VirtualService: auto transport and protocol
		"transport-protocol", // annotations set transport and protocol
		"bad-annotation",     // unknown transport or protocol: error naming the annotation
		"method-exact",       // exact method -> method_name; inbound keeps only the catch-all
		"method-prefix",      // error: thrift_proxy has no method prefix match
		"method-regex",       // error: nor a regex one
		"header-match",       // header matchers; an empty prefix is "present"
		"bad-header",         // error: empty header regex, which Envoy rejects
		"weighted-subsets",   // 20/80 between DestinationRule subsets
		"zero-weight",        // a destination of weight 0 is left out
		"missing-subset",     // error: subset in no DestinationRule
		"weights-not-100",    // error
		"several-matches",    // one Thrift route per match entry, same action
		"rules-in-order",     // rules keep their order, before the catch-all
		"multi-vip",          // a patch per VIP listener
		"two-thrift-ports",   // a filter pair per port; inbound on the target port
		"no-address",         // inbound only
		"nothing-to-patch",   // no address and no selector: error
	} {
		t.Run(name, func(t *testing.T) { translatetest.Golden(t, New(), model.Thrift, name) })
	}
}

// FuzzGenerate feeds arbitrary method and header matches, weights and annotation
// values through a VirtualService. The generator must not panic, and must return
// either an error or EnvoyFilters whose every patch value Envoy would accept.
func FuzzGenerate(f *testing.F) {
	f.Add("sayHello", uint8(0), "user", "jason", uint8(0), int32(20), int32(80), "framed", "binary")
	f.Add("say", uint8(1), "region", "eu-", uint8(1), int32(100), int32(0), "", "")
	f.Add("say.*", uint8(2), "trace", "[0-9a-f]+", uint8(2), int32(50), int32(50), "header", "compact")
	f.Add("", uint8(3), "canary", "", uint8(1), int32(0), int32(100), "auto", "twitter")
	f.Add("", uint8(0), "", "", uint8(0), int32(-1), int32(101), "zlib", "json")
	f.Add("(", uint8(2), "x", "(", uint8(2), int32(30), int32(30), "UNFRAMED", "lax_binary")
	f.Add("m\x00\n", uint8(0), "h\r", "\xff", uint8(0), int32(1), int32(99), " ", "\t")
	f.Add("m", uint8(0), "", "v", uint8(0), int32(100), int32(0), "", "")
	f.Add("m", uint8(3), "h", "", uint8(2), int32(100), int32(0), "", "")
	f.Add("m", uint8(4), "h", "v", uint8(3), int32(100), int32(0), "auto", "auto")
	f.Fuzz(func(t *testing.T, method string, methodKind uint8, header, value string, headerKind uint8, w1, w2 int32, transport, protocol string) {
		generatortest.SkipInvalidUTF8(t, method, header, value, transport, protocol)
		match := &networking.HTTPMatchRequest{Method: stringMatch(method, methodKind)}
		if hm := stringMatch(value, headerKind); hm != nil {
			match.Headers = map[string]*networking.StringMatch{header: hm}
		}
		svc := &model.Service{
			Name:      "hello",
			Namespace: "thrift",
			Annotations: map[string]string{
				TransportAnnotation: transport,
				ProtocolAnnotation:  protocol,
			},
			Hosts:            []string{"hello.thrift.example"},
			Addresses:        []string{"240.240.0.1", "240.240.0.2"},
			WorkloadSelector: map[string]string{"app": "hello"},
			VirtualServices: []*model.Config[*networking.VirtualService]{{
				Name: "hello", Namespace: "thrift",
				Spec: &networking.VirtualService{
					Hosts: []string{"hello.thrift.example"},
					Http: []*networking.HTTPRoute{{
						Match: []*networking.HTTPMatchRequest{match},
						Route: []*networking.HTTPRouteDestination{
							{Destination: &networking.Destination{Host: "hello.thrift.example", Subset: "v1"}, Weight: w1},
							{Destination: &networking.Destination{Host: "hello.thrift.example", Subset: "v2"}, Weight: w2},
						},
					}},
				},
			}},
			DestinationRules: []*model.Config[*networking.DestinationRule]{{
				Name: "hello", Namespace: "thrift",
				Spec: &networking.DestinationRule{
					Host:    "hello.thrift.example",
					Subsets: []*networking.Subset{{Name: "v1"}, {Name: "v2"}},
				},
			}},
		}
		port := &model.Port{Number: 9090, Name: "tcp-thrift", Protocol: model.Thrift, TargetPort: 9090}

		efs, err := New().Generate(generatortest.Context, svc, port)
		if !generatortest.CheckResult(t, efs, err) {
			return
		}
		// An empty prefix matches every method, which thrift_proxy can express.
		if k := methodKind % 5; (k == 1 && method != "") || k == 2 {
			t.Errorf("method %s was accepted: thrift_proxy cannot match it", match.GetMethod())
		}
		if w1+w2 != 100 {
			t.Errorf("weights %d+%d were accepted", w1, w2)
		}
		if len(efs) != 2 || len(efs[0].Spec.GetConfigPatches()) != 2 {
			t.Fatalf("want an outbound EnvoyFilter with 2 patches and an inbound one, got %d", len(efs))
		}
	})
}

// stringMatch builds an Istio string match of a kind: 0 exact, 1 prefix, 2 regex,
// 3 none (nil), anything else an empty match.
func stringMatch(s string, kind uint8) *networking.StringMatch {
	switch kind % 5 {
	case 0:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	case 1:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
	case 2:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
	case 3:
		return nil
	}
	return &networking.StringMatch{}
}

func TestAnnotationError(t *testing.T) {
	svc := &model.Service{Annotations: map[string]string{TransportAnnotation: "zlib"}}
	_, err := annotation(svc, TransportAnnotation, transports)
	if err == nil {
		t.Fatal("no error for an unknown transport")
	}
	for _, want := range []string{TransportAnnotation, `"zlib"`, "auto, framed, unframed, header"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
}
