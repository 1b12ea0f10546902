package rds

import (
	"testing"

	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func versionOf(t *testing.T, resources map[string]proto.Message) string {
	t.Helper()
	set, err := newResourceSet(routeType, resources)
	if err != nil {
		t.Fatal(err)
	}
	return set.version
}

// Versions depend on content alone: not on map order inside messages (params_match)
// or in the set, nor on the messages' identity.
func TestVersionIsAFunctionOfContent(t *testing.T) {
	base := versionOf(t, map[string]proto.Message{"a": routes("a", "c1"), "b": routes("b", "c2")})
	for range 20 {
		if got := versionOf(t, map[string]proto.Message{"b": routes("b", "c2"), "a": routes("a", "c1")}); got != base {
			t.Fatalf("same content: version %q, then %q", base, got)
		}
	}
	for name, resources := range map[string]map[string]proto.Message{
		"a field changed":   {"a": routes("a", "c1"), "b": routes("b", "other")},
		"a resource less":   {"a": routes("a", "c1")},
		"a resource more":   {"a": routes("a", "c1"), "b": routes("b", "c2"), "c": routes("c", "c3")},
		"nothing":           {},
		"resources swapped": {"a": routes("a", "c2"), "b": routes("b", "c1")},
	} {
		if got := versionOf(t, resources); got == base || got == "" {
			t.Errorf("%s: version %q (base %q)", name, got, base)
		}
	}
}

// Set refuses what sidecars could not use, and then changes nothing.
func TestSetRefusesUnusableResources(t *testing.T) {
	s := New(testr.New(t), TLS{})
	version := set(t, s, routes("a", "c1"))

	for _, tc := range []struct {
		name      string
		typeURL   string
		resources map[string]proto.Message
	}{
		{"another message type", routeType, map[string]proto.Message{"a": &dubbo.RouteConfiguration{Name: "a"}}},
		{"nil message", routeType, map[string]proto.Message{"a": nil}},
		{"typed nil message", routeType, map[string]proto.Message{"a": (*dubbo.MultipleRouteConfiguration)(nil)}},
		{"name field differs", routeType, map[string]proto.Message{"a": routes("b", "c1")}},
		{"empty name", routeType, map[string]proto.Message{"": routes("", "c1")}},
		{"type URL without a message name", "type.googleapis.com/", map[string]proto.Message{"a": routes("a", "c1")}},
		{"type URL without a slash", "MultipleRouteConfiguration", map[string]proto.Message{"a": routes("a", "c1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Set(tc.typeURL, tc.resources); err == nil {
				t.Error("Set accepted it")
			}
			if got, _ := s.Version(routeType); got != version {
				t.Errorf("version %q after a refused Set, want %q", got, version)
			}
		})
	}
}

// Set keeps copies: the caller may change its messages afterwards.
func TestSetCopiesResources(t *testing.T) {
	s := New(testr.New(t), TLS{})
	mine := routes("a", "c1")
	version := set(t, s, mine)
	mine.RouteConfig[0].Interface = "changed.after.Set"

	if got, _ := s.Version(routeType); got != version {
		t.Errorf("version %q, want %q", got, version)
	}
	served := s.cache.snap.GetResources(routeType)["a"]
	if diff := cmp.Diff(routes("a", "c1"), served, protocmp.Transform()); diff != "" {
		t.Errorf("served resource (-want +got):\n%s", diff)
	}
}
