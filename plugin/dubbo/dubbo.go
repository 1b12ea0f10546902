// Package dubbo generates Envoy's dubbo_proxy filter for `tcp-dubbo` ports.
package dubbo

import (
	"errors"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

const (
	// FilterName is Envoy's name of the Dubbo network filter.
	FilterName = "envoy.filters.network.dubbo_proxy"
	// InterfaceAnnotation on the ServiceEntry (or Service) names the Dubbo interface it serves.
	InterfaceAnnotation = "interface"
	routerFilter        = "envoy.filters.dubbo.router"
)

// New returns the Dubbo generator.
func New() generator.Generator {
	return generator.Func(generate)
}

func generate(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	iface := svc.Annotations[InterfaceAnnotation]
	if iface == "" {
		return nil, errors.New(`missing annotation "interface": set it to the Dubbo interface the service serves, e.g. org.apache.dubbo.samples.basic.api.DemoService`)
	}
	rules, err := patch.Routes(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	return patch.ListenerFilters(ctx, svc, port, patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		var routes []*dubbo.Route
		// Clients route; the server side takes everything to its workload.
		if l.Direction == patch.Outbound {
			routes = fromRules(rules)
		}
		routes = append(routes, catchAll(l.Cluster))
		return patch.NetworkFilter(FilterName, proxyConfig(iface, l, routes)), nil
	})
}

// fromRules turns VirtualService rules into Dubbo routes, in order: one route per
// match entry (any of them selects the rule), or one for every method.
func fromRules(rules []*patch.Route) []*dubbo.Route {
	var out []*dubbo.Route
	for _, r := range rules {
		action := routeAction(r.Clusters)
		if len(r.Matches) == 0 {
			out = append(out, &dubbo.Route{Match: &dubbo.RouteMatch{Method: anyMethod()}, Route: action})
			continue
		}
		for _, m := range r.Matches {
			method := anyMethod()
			if m.Method != nil {
				method = &dubbo.MethodMatch{Name: patch.StringMatcher(m.Method)}
			}
			out = append(out, &dubbo.Route{
				Match: &dubbo.RouteMatch{Method: method, Headers: patch.HeaderMatchers(m.Headers)},
				Route: action,
			})
		}
	}
	return out
}

func routeAction(clusters []patch.WeightedCluster) *dubbo.RouteAction {
	if len(clusters) == 1 {
		return &dubbo.RouteAction{ClusterSpecifier: &dubbo.RouteAction_Cluster{Cluster: clusters[0].Name}}
	}
	wc := &routev3.WeightedCluster{}
	for _, c := range clusters {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c.Name, Weight: wrapperspb.UInt32(c.Weight)})
	}
	return &dubbo.RouteAction{ClusterSpecifier: &dubbo.RouteAction_WeightedClusters{WeightedClusters: wc}}
}

func proxyConfig(iface string, l *patch.Listener, routes []*dubbo.Route) *dubbo.DubboProxy {
	return &dubbo.DubboProxy{
		StatPrefix:        l.StatPrefix,
		ProtocolType:      dubbo.ProtocolType_Dubbo,
		SerializationType: dubbo.SerializationType_Hessian2,
		// Istio's proxy accepts multiple_route_config; route_config is deprecated.
		RouteSpecifier: &dubbo.DubboProxy_MultipleRouteConfig{MultipleRouteConfig: &dubbo.MultipleRouteConfiguration{
			Name: l.StatPrefix,
			RouteConfig: []*dubbo.RouteConfiguration{{
				Name:      iface,
				Interface: iface,
				Routes:    routes,
			}},
		}},
		DubboFilters: []*dubbo.DubboFilter{{Name: routerFilter}},
	}
}

// catchAll routes every method to cluster.
func catchAll(cluster string) *dubbo.Route {
	return &dubbo.Route{
		Match: &dubbo.RouteMatch{Method: anyMethod()},
		Route: &dubbo.RouteAction{ClusterSpecifier: &dubbo.RouteAction_Cluster{Cluster: cluster}},
	}
}

// anyMethod matches every method. Envoy's Dubbo route needs a method matcher, so
// "any" is the regex ".*".
func anyMethod() *dubbo.MethodMatch {
	return &dubbo.MethodMatch{Name: &matcher.StringMatcher{
		MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: ".*"}},
	}}
}
