// Package thrift generates Envoy's thrift_proxy filter for `tcp-thrift` ports.
package thrift

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/thrift_proxy/router/v3"
	thrift "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/thrift_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

const (
	// FilterName is Envoy's name of the Thrift network filter.
	FilterName = "envoy.filters.network.thrift_proxy"
	// TransportAnnotation on the ServiceEntry (or Service) sets the Thrift transport;
	// auto-detection when absent or empty.
	TransportAnnotation = "thrift.aeraki.io/transport"
	// ProtocolAnnotation on the ServiceEntry (or Service) sets the Thrift protocol;
	// auto-detection when absent or empty.
	ProtocolAnnotation = "thrift.aeraki.io/protocol"
	// routerFilter is the only Thrift filter we emit. Istio's proxy also carries
	// header_to_metadata and rate_limit, but not payload_to_metadata.
	routerFilter = "envoy.filters.thrift.router"
)

// Annotation values, in the order they are listed to the user.
var (
	transports = []namedValue[thrift.TransportType]{
		{"auto", thrift.TransportType_AUTO_TRANSPORT},
		{"framed", thrift.TransportType_FRAMED},
		{"unframed", thrift.TransportType_UNFRAMED},
		{"header", thrift.TransportType_HEADER},
	}
	protocols = []namedValue[thrift.ProtocolType]{
		{"auto", thrift.ProtocolType_AUTO_PROTOCOL},
		{"binary", thrift.ProtocolType_BINARY},
		{"lax_binary", thrift.ProtocolType_LAX_BINARY},
		{"compact", thrift.ProtocolType_COMPACT},
		// Deprecated in Envoy's API (since v3.0); Envoy warns when it is used.
	}
)

type namedValue[T any] struct {
	name  string
	value T
}

// New returns the Thrift generator.
func New() generator.Generator {
	return generator.Func(generate)
}

func generate(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	transport, err := annotation(svc, TransportAnnotation, transports)
	if err != nil {
		return nil, err
	}
	protocol, err := annotation(svc, ProtocolAnnotation, protocols)
	if err != nil {
		return nil, err
	}
	rules, err := patch.Routes(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	outbound, err := fromRules(rules)
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("thrift router config: %w", err)
	}
	return patch.ListenerFilters(ctx, svc, port, patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		var routes []*thrift.Route
		// Clients route; the server side takes everything to its workload.
		if l.Direction == patch.Outbound {
			routes = slices.Clone(outbound)
		}
		routes = append(routes, &thrift.Route{Match: anyMethod(nil), Route: toCluster(l.Cluster)})
		return patch.NetworkFilter(FilterName, &thrift.ThriftProxy{
			StatPrefix: l.StatPrefix,
			Transport:  transport,
			Protocol:   protocol,
			RouteConfig: &thrift.RouteConfiguration{
				Name:   l.StatPrefix,
				Routes: routes,
			},
			ThriftFilters: []*thrift.ThriftFilter{{
				Name:       routerFilter,
				ConfigType: &thrift.ThriftFilter_TypedConfig{TypedConfig: router},
			}},
		}), nil
	})
}

// annotation reads an enum-valued annotation of the service: absent or empty is the
// first (auto) value; case and surrounding spaces do not matter.
func annotation[T any](svc *model.Service, key string, allowed []namedValue[T]) (T, error) {
	raw, ok := svc.Annotations[key]
	v := strings.ToLower(strings.TrimSpace(raw))
	if !ok || v == "" {
		return allowed[0].value, nil
	}
	names := make([]string, 0, len(allowed))
	for _, a := range allowed {
		if a.name == v {
			return a.value, nil
		}
		names = append(names, a.name)
	}
	var zero T
	return zero, fmt.Errorf("annotation %q has the unknown value %q: use one of %s", key, raw, strings.Join(names, ", "))
}

// fromRules turns VirtualService rules into Thrift routes, in order: one route per
// match entry (any of them selects the rule), or one for every method. Thrift matches
// a method by its exact name only.
func fromRules(rules []*patch.Route) ([]*thrift.Route, error) {
	var out []*thrift.Route
	for _, r := range rules {
		action := routeAction(r.Clusters)
		if len(r.Matches) == 0 {
			out = append(out, &thrift.Route{Match: anyMethod(nil), Route: action})
			continue
		}
		for _, m := range r.Matches {
			headers := patch.HeaderMatchers(m.Headers)
			match := anyMethod(headers)
			switch mm := m.Method.GetMatchType().(type) {
			case nil:
			case *networking.StringMatch_Exact:
				match = &thrift.RouteMatch{
					MatchSpecifier: &thrift.RouteMatch_MethodName{MethodName: mm.Exact},
					Headers:        headers,
				}
			default:
				return nil, fmt.Errorf("%s: method %s: thrift_proxy matches a method by its exact name only; list each method as a separate exact match (or drop the method match to match every method)",
					r.Where, describe(m.Method))
			}
			out = append(out, &thrift.Route{Match: match, Route: action})
		}
	}
	return out, nil
}

func describe(m *networking.StringMatch) string {
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		return fmt.Sprintf("prefix %q", v.Prefix)
	case *networking.StringMatch_Regex:
		return fmt.Sprintf("regex %q", v.Regex)
	}
	return "match"
}

// anyMethod matches every request: Envoy reads an empty method_name as "any method".
// It cannot be inverted (Envoy rejects invert with a wildcard).
func anyMethod(headers []*routev3.HeaderMatcher) *thrift.RouteMatch {
	return &thrift.RouteMatch{
		MatchSpecifier: &thrift.RouteMatch_MethodName{MethodName: ""},
		Headers:        headers,
	}
}

func toCluster(name string) *thrift.RouteAction {
	return &thrift.RouteAction{ClusterSpecifier: &thrift.RouteAction_Cluster{Cluster: name}}
}

// routeAction sends to one cluster, or splits by weight.
func routeAction(clusters []patch.WeightedCluster) *thrift.RouteAction {
	if len(clusters) == 1 {
		return toCluster(clusters[0].Name)
	}
	wc := &thrift.WeightedCluster{}
	for _, c := range clusters {
		wc.Clusters = append(wc.Clusters, &thrift.WeightedCluster_ClusterWeight{Name: c.Name, Weight: wrapperspb.UInt32(c.Weight)})
	}
	return &thrift.RouteAction{ClusterSpecifier: &thrift.RouteAction_WeightedClusters{WeightedClusters: wc}}
}
