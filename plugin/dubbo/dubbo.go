// Package dubbo generates Envoy's dubbo_proxy filter for `tcp-dubbo` ports.
package dubbo

import (
	"errors"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/model"
)

const (
	// FilterName is Envoy's name of the Dubbo network filter.
	FilterName = "envoy.filters.network.dubbo_proxy"
	// InterfaceAnnotation on the ServiceEntry (or Service) names the Dubbo interface it serves.
	InterfaceAnnotation = "interface"
	routerFilter        = "envoy.filters.dubbo.router"
)

// New returns the Dubbo generator.
func New() envoyfilter.Generator {
	return envoyfilter.GeneratorFunc(generate)
}

func generate(ctx *envoyfilter.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	iface := svc.Annotations[InterfaceAnnotation]
	if iface == "" {
		return nil, errors.New(`missing annotation "interface": set it to the Dubbo interface the service serves, e.g. org.apache.dubbo.samples.basic.api.DemoService`)
	}
	return envoyfilter.ListenerFilters(ctx, svc, port, envoyfilter.ReplaceTCPProxy, func(l *envoyfilter.Listener) (*listener.Filter, error) {
		return envoyfilter.NetworkFilter(FilterName, proxyConfig(iface, l))
	})
}

func proxyConfig(iface string, l *envoyfilter.Listener) *dubbo.DubboProxy {
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
				Routes:    []*dubbo.Route{catchAll(l.Cluster)},
			}},
		}},
		DubboFilters: []*dubbo.DubboFilter{{Name: routerFilter}},
	}
}

// catchAll routes every method to cluster. Envoy's Dubbo route needs a method matcher,
// so "any method" is the regex ".*".
func catchAll(cluster string) *dubbo.Route {
	return &dubbo.Route{
		Match: &dubbo.RouteMatch{Method: &dubbo.MethodMatch{Name: &matcher.StringMatcher{
			MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: ".*"}},
		}}},
		Route: &dubbo.RouteAction{ClusterSpecifier: &dubbo.RouteAction_Cluster{Cluster: cluster}},
	}
}
