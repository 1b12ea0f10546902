package patch

import (
	"math"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

const reviewsHost = "reviews.app.svc.cluster.local"

var routesContext = &generator.Context{RootNamespace: "istio-system", DomainSuffix: "cluster.local"}

var routesPort = &model.Port{Number: 20880, Name: "tcp-dubbo", Protocol: model.Dubbo}

func vsConfig(ns, name string, rules ...*networking.HTTPRoute) *model.Config[*networking.VirtualService] {
	return &model.Config[*networking.VirtualService]{Name: name, Namespace: ns, Spec: &networking.VirtualService{Hosts: []string{"reviews"}, Http: rules}}
}

func drConfig(ns, host string, subsets ...string) *model.Config[*networking.DestinationRule] {
	dr := &networking.DestinationRule{Host: host}
	for _, s := range subsets {
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s, Labels: map[string]string{"version": s}})
	}
	return &model.Config[*networking.DestinationRule]{Name: "dr-" + host, Namespace: ns, Spec: dr}
}

// routesService is app/reviews with the VirtualServices and DestinationRules given.
func routesService(vss []*model.Config[*networking.VirtualService], drs ...*model.Config[*networking.DestinationRule]) *model.Service {
	return &model.Service{
		Name: "reviews", Namespace: "app", Hosts: []string{reviewsHost}, Addresses: []string{"10.0.0.1"},
		Ports: []*model.Port{routesPort}, VirtualServices: vss, DestinationRules: drs,
	}
}

// to is a route destination: host, subset and weight.
func routeTo(host, subset string, weight int32) *networking.HTTPRouteDestination {
	return &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset}, Weight: weight}
}

func httpRule(name string, match []*networking.HTTPMatchRequest, dests ...*networking.HTTPRouteDestination) *networking.HTTPRoute {
	return &networking.HTTPRoute{Name: name, Match: match, Route: dests}
}

func exactMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefixMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

func regexMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

func weighted(port uint32, subset, host string, weight uint32) WeightedCluster {
	return WeightedCluster{Name: model.OutboundClusterName(port, subset, host), Weight: weight}
}

// routesOf returns the routes of a service with one VirtualService app/vs of the
// rules, and DestinationRules defining v1 and v2 of reviews.
func routesOf(t *testing.T, rules ...*networking.HTTPRoute) ([]*Route, error) {
	t.Helper()
	svc := routesService([]*model.Config[*networking.VirtualService]{vsConfig("app", "vs", rules...)}, drConfig("app", "reviews", "v1", "v2"))
	return Routes(routesContext, svc, routesPort)
}

func TestRoutesWithoutVirtualService(t *testing.T) {
	got, err := Routes(routesContext, routesService(nil, drConfig("app", "reviews", "v1")), routesPort)
	if got != nil || err != nil {
		t.Errorf("got %v, %v; want nil: everything to the service's own cluster", got, err)
	}
}

// TestRoutesFirstVirtualService: of two VirtualServices bound to the service, the
// first by namespace and name is used, as Istio's sidecars do; the other is not read.
func TestRoutesFirstVirtualService(t *testing.T) {
	first := vsConfig("app", "first", httpRule("", nil, routeTo("reviews", "v1", 0)))
	second := vsConfig("app", "second", httpRule("", nil, routeTo("reviews", "v2", 0)))
	svc := routesService([]*model.Config[*networking.VirtualService]{first, second}, drConfig("app", "reviews", "v1", "v2"))
	got, err := Routes(routesContext, svc, routesPort)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Route{{Where: "VirtualService app/first, http rule #0", Clusters: []WeightedCluster{weighted(20880, "v1", reviewsHost, 100)}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("want the first VirtualService's route to v1 (-want +got):\n%s", diff)
	}

	// An invalid second VirtualService does not matter: it is not in effect.
	second.Spec.Http[0].Route[0].Weight = 50
	if _, err := Routes(routesContext, svc, routesPort); err != nil {
		t.Errorf("the second VirtualService was read: %v", err)
	}
	// An invalid first one does.
	first.Spec.Http[0].Route[0].Weight = 50
	if _, err := Routes(routesContext, svc, routesPort); err == nil || !strings.Contains(err.Error(), "VirtualService app/first") {
		t.Errorf("invalid first VirtualService: %v; want an error naming it", err)
	}
}

func TestRoutesMatches(t *testing.T) {
	for _, c := range []struct {
		name  string
		match []*networking.HTTPMatchRequest
		want  []*RouteMatch
	}{
		{name: "no match: every request", want: nil},
		{
			name:  "method exact",
			match: []*networking.HTTPMatchRequest{{Method: exactMatch("sayHello")}},
			want:  []*RouteMatch{{Method: exactMatch("sayHello")}},
		},
		{
			name:  "method prefix",
			match: []*networking.HTTPMatchRequest{{Method: prefixMatch("say")}},
			want:  []*RouteMatch{{Method: prefixMatch("say")}},
		},
		{
			name:  "method regex",
			match: []*networking.HTTPMatchRequest{{Method: regexMatch("say(Hello|Bye)")}},
			want:  []*RouteMatch{{Method: regexMatch("say(Hello|Bye)")}},
		},
		{
			name:  "empty method prefix: any method",
			match: []*networking.HTTPMatchRequest{{Method: prefixMatch("")}},
			want:  []*RouteMatch{{}},
		},
		{
			name: "headers, with the method",
			match: []*networking.HTTPMatchRequest{{
				Method:  exactMatch("get"),
				Headers: map[string]*networking.StringMatch{"x-user": exactMatch("alice"), "x-canary": prefixMatch(""), "x-tenant": regexMatch("t-[0-9]+")},
			}},
			want: []*RouteMatch{{
				Method:  exactMatch("get"),
				Headers: map[string]*networking.StringMatch{"x-user": exactMatch("alice"), "x-canary": prefixMatch(""), "x-tenant": regexMatch("t-[0-9]+")},
			}},
		},
		{
			name:  "any one of several matches",
			match: []*networking.HTTPMatchRequest{{Method: exactMatch("a")}, {Headers: map[string]*networking.StringMatch{"x-b": exactMatch("b")}}},
			want:  []*RouteMatch{{Method: exactMatch("a")}, {Headers: map[string]*networking.StringMatch{"x-b": exactMatch("b")}}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := routesOf(t, httpRule("r", c.match, routeTo("reviews", "", 0)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d routes, want 1", len(got))
			}
			if diff := cmp.Diff(c.want, got[0].Matches, protocmp.Transform()); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoutesRejectsMatches(t *testing.T) {
	for _, c := range []struct {
		name  string
		match *networking.HTTPMatchRequest
		want  string
	}{
		{"empty method regex", &networking.HTTPMatchRequest{Method: regexMatch("")}, "method regex is empty"},
		{"method regex that does not compile", &networking.HTTPMatchRequest{Method: regexMatch("say(")}, `method regex "say(" does not compile`},
		{"empty method match", &networking.HTTPMatchRequest{Method: &networking.StringMatch{}}, "method match is empty"},
		{"empty header name", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"": exactMatch("x")}}, "empty header name"},
		{"header name with LF", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x-a\nb": exactMatch("x")}}, "contains NUL, CR or LF"},
		{"header name with NUL", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x-a\x00": exactMatch("x")}}, "contains NUL, CR or LF"},
		{"empty header match", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x-a": {}}}, "header x-a match is empty"},
		{"header regex that does not compile", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x-a": regexMatch("[")}}, `header x-a regex "["`},
		// Envoy refuses the whole listener for a regex program over 100 instructions.
		{"method regex larger than Envoy accepts", &networking.HTTPMatchRequest{Method: regexMatch(strings.Repeat("a", 100_000))}, "instructions, more than the 100 Envoy accepts"},
		{"header regex larger than Envoy accepts", &networking.HTTPMatchRequest{Headers: map[string]*networking.StringMatch{"x-a": regexMatch("(x|y){50}z")}}, "more than the 100 Envoy accepts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := routesOf(t, httpRule("bad", []*networking.HTTPMatchRequest{c.match}, routeTo("reviews", "", 0)))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "VirtualService app/vs, http rule bad: ") {
				t.Errorf("got %v, %v; want an error naming the rule, with %q", got, err, c.want)
			}
		})
	}
}

func TestRoutesWeights(t *testing.T) {
	for _, c := range []struct {
		name  string
		dests []*networking.HTTPRouteDestination
		want  []WeightedCluster
		err   string
	}{
		{name: "single destination without weight: 100", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 0)}, want: []WeightedCluster{weighted(20880, "v1", reviewsHost, 100)}},
		{name: "single destination of 100", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 100)}, want: []WeightedCluster{weighted(20880, "v1", reviewsHost, 100)}},
		{name: "split", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 30), routeTo("reviews", "v2", 70)}, want: []WeightedCluster{weighted(20880, "v1", reviewsHost, 30), weighted(20880, "v2", reviewsHost, 70)}},
		{name: "zero weight dropped", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 0), routeTo("reviews", "v2", 100)}, want: []WeightedCluster{weighted(20880, "v2", reviewsHost, 100)}},
		{name: "single destination of 50", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 50)}, err: "destination weights add up to 50, not 100"},
		{name: "sum below 100", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 50), routeTo("reviews", "v2", 40)}, err: "add up to 90, not 100"},
		{name: "sum above 100", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 60), routeTo("reviews", "v2", 50)}, err: "add up to 110, not 100"},
		{name: "two without weights: no default", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", 0), routeTo("reviews", "v2", 0)}, err: "add up to 0, not 100"},
		{name: "negative", dests: []*networking.HTTPRouteDestination{routeTo("reviews", "v1", -10), routeTo("reviews", "v2", 110)}, err: "negative weight -10"},
		// In 32 bits these wrap around to exactly 100.
		{name: "weights that overflow 32 bits", dests: []*networking.HTTPRouteDestination{
			routeTo("reviews", "v1", math.MaxInt32), routeTo("reviews", "v2", math.MaxInt32), routeTo("reviews", "v1", 102),
		}, err: "add up to 4294967396, not 100"},
		{name: "no destination", err: "no route destinations"},
		{name: "destination without host", dests: []*networking.HTTPRouteDestination{routeTo("", "", 0)}, err: "a destination has no host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := routesOf(t, httpRule("", nil, c.dests...))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "VirtualService app/vs, http rule #0: ") {
					t.Errorf("got %v, %v; want an error naming the rule, with %q", got, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d routes, want 1", len(got))
			}
			if diff := cmp.Diff(c.want, got[0].Clusters); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoutesSubsets(t *testing.T) {
	for _, c := range []struct {
		name string
		dest *networking.HTTPRouteDestination
		drs  []*model.Config[*networking.DestinationRule]
		want string // cluster, or a part of the error
	}{
		{"defined", routeTo("reviews", "v2", 0), []*model.Config[*networking.DestinationRule]{drConfig("app", "reviews", "v1", "v2")}, "outbound|20880|v2|" + reviewsHost},
		{"defined by a DestinationRule with the full host", routeTo("reviews", "v2", 0), []*model.Config[*networking.DestinationRule]{drConfig("other", reviewsHost, "v2")}, "outbound|20880|v2|" + reviewsHost},
		{"defined by the second DestinationRule", routeTo("reviews", "v3", 0), []*model.Config[*networking.DestinationRule]{drConfig("app", "reviews", "v1"), drConfig("ops", reviewsHost, "v3")}, "outbound|20880|v3|" + reviewsHost},
		{"undefined", routeTo("reviews", "v3", 0), []*model.Config[*networking.DestinationRule]{drConfig("app", "reviews", "v1", "v2")}, `subset "v3" of ` + reviewsHost + " is not defined in any DestinationRule"},
		{"no DestinationRule", routeTo("reviews", "v1", 0), nil, `subset "v1" of ` + reviewsHost + " is not defined"},
		// A short host in another namespace is another host.
		{"defined for another host only", routeTo("reviews", "v1", 0), []*model.Config[*networking.DestinationRule]{drConfig("other", "reviews", "v1")}, `subset "v1" of ` + reviewsHost + " is not defined"},
		{"subset of another host: not checked", routeTo("ratings.app.svc.cluster.local", "v9", 0), nil, "outbound|20880|v9|ratings.app.svc.cluster.local"},
		{"no subset", routeTo("reviews", "", 0), nil, "outbound|20880||" + reviewsHost},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := routesService([]*model.Config[*networking.VirtualService]{vsConfig("app", "vs", httpRule("", nil, c.dest))}, c.drs...)
			got, err := Routes(routesContext, svc, routesPort)
			if strings.HasPrefix(c.want, "outbound|") {
				if err != nil || len(got) != 1 || !cmp.Equal(got[0].Clusters, []WeightedCluster{{Name: c.want, Weight: 100}}) {
					t.Errorf("got %v, %v; want %s", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, %v; want an error with %q", got, err, c.want)
			}
		})
	}
}

// TestRoutesHosts: short destination hosts are completed in the VirtualService's
// namespace with the context's domain suffix; the port is the destination's, else
// the current one.
func TestRoutesHosts(t *testing.T) {
	ctx := &generator.Context{RootNamespace: "istio-system", DomainSuffix: "corp.example"}
	host := "reviews.app.svc.corp.example"
	svc := &model.Service{Name: "reviews", Namespace: "app", Hosts: []string{host}, Ports: []*model.Port{routesPort}}
	vs := vsConfig("app", "vs", httpRule("", nil,
		routeTo("reviews", "", 10),
		routeTo("ratings", "", 10),
		routeTo("ratings.shop", "", 10), // has a dot: as it is
		&networking.HTTPRouteDestination{Destination: &networking.Destination{Host: "ratings", Port: &networking.PortSelector{Number: 9080}}, Weight: 70},
	))
	svc.VirtualServices = []*model.Config[*networking.VirtualService]{vs}
	// The VirtualService lives in namespace shop: its short hosts are shop's.
	other := vsConfig("shop", "vs", httpRule("", nil, routeTo("reviews", "", 0)))
	for _, c := range []struct {
		vs   *model.Config[*networking.VirtualService]
		want []WeightedCluster
	}{
		{vs, []WeightedCluster{
			weighted(20880, "", host, 10),
			weighted(20880, "", "ratings.app.svc.corp.example", 10),
			weighted(20880, "", "ratings.shop", 10),
			weighted(9080, "", "ratings.app.svc.corp.example", 70),
		}},
		{other, []WeightedCluster{weighted(20880, "", "reviews.shop.svc.corp.example", 100)}},
	} {
		svc.VirtualServices = []*model.Config[*networking.VirtualService]{c.vs}
		got, err := Routes(ctx, svc, routesPort)
		if err != nil || len(got) != 1 {
			t.Fatalf("VirtualService %s/%s: %d routes, %v; want 1", c.vs.Namespace, c.vs.Name, len(got), err)
		}
		if diff := cmp.Diff(c.want, got[0].Clusters); diff != "" {
			t.Errorf("VirtualService %s/%s: clusters (-want +got):\n%s", c.vs.Namespace, c.vs.Name, diff)
		}
	}
}

// TestRoutesWhere: each route names its VirtualService and rule, by name or by
// index, in rule order.
func TestRoutesWhere(t *testing.T) {
	got, err := routesOf(t,
		httpRule("canary", []*networking.HTTPMatchRequest{{Method: exactMatch("a")}}, routeTo("reviews", "v2", 0)),
		httpRule("", []*networking.HTTPMatchRequest{{Method: exactMatch("b")}}, routeTo("reviews", "v1", 0)),
		httpRule("default", nil, routeTo("reviews", "", 0)),
	)
	if err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, r := range got {
		where = append(where, r.Where)
	}
	want := []string{"VirtualService app/vs, http rule canary", "VirtualService app/vs, http rule #1", "VirtualService app/vs, http rule default"}
	if !cmp.Equal(want, where) {
		t.Errorf("where %q, want %q", where, want)
	}

	_, err = routesOf(t, httpRule("ok", nil, routeTo("reviews", "", 0)), httpRule("", nil, routeTo("reviews", "v9", 0)))
	if err == nil || !strings.HasPrefix(err.Error(), "VirtualService app/vs, http rule #1: ") {
		t.Errorf("error %v; want one naming rule #1", err)
	}

	svc := routesService([]*model.Config[*networking.VirtualService]{{Name: "nohosts", Namespace: "app", Spec: &networking.VirtualService{}}})
	if _, err := Routes(routesContext, svc, routesPort); err == nil || !strings.Contains(err.Error(), "VirtualService app/nohosts has no hosts") {
		t.Errorf("VirtualService without hosts: %v", err)
	}
}

func TestHeaderMatchers(t *testing.T) {
	got := HeaderMatchers(map[string]*networking.StringMatch{"x-b": prefixMatch(""), "x-a": regexMatch("a+"), "x-c": exactMatch("c"), "x-d": prefixMatch("d")})
	want := []*routev3.HeaderMatcher{
		{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: "a+"}}}}},
		{Name: "x-b", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
		{Name: "x-c", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: "c"}}}},
		{Name: "x-d", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: "d"}}}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("header matchers (-want +got):\n%s", diff)
	}
	if m := StringMatcher(nil); m != nil {
		t.Errorf("StringMatcher(nil) = %v, want nil", m)
	}
}
