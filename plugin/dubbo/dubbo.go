// Package dubbo generates Envoy's dubbo_proxy filter for `tcp-dubbo` ports.
package dubbo

import (
	"errors"
	"fmt"
	"strconv"

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

// New returns the Dubbo generator. It can share a port's client filter (see
// generator.Sharer): Dubbo requests name their interface, so one route
// configuration per port, holding every interface of the port, routes them all.
func New() generator.Sharer {
	return sharer{}
}

type sharer struct{}

// Generate puts dubbo_proxy on the port's listeners in both directions, routes inline.
func (sharer) Generate(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	iface, err := serviceInterface(svc)
	if err != nil {
		return nil, err
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
		return inlineFilter(l.StatPrefix, routeConfig(iface, routes)), nil
	})
}

// Key is the interface: Dubbo requests name it, and the shared routes hold one route
// configuration per interface.
func (sharer) Key(svc *model.Service, _ *model.Port) string {
	return svc.Annotations[InterfaceAnnotation]
}

// Inbound puts dubbo_proxy on the server side only, where everything goes to the
// workload; a service without workloads in the mesh has none.
func (sharer) Inbound(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	iface, err := serviceInterface(svc)
	if err != nil {
		return nil, err
	}
	b, err := patch.NewBuilder(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	err = b.ListenerFilter(patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		return inlineFilter(l.StatPrefix, routeConfig(iface, []*dubbo.Route{catchAll(l.Cluster)})), nil
	}, patch.Inbound)
	if errors.Is(err, patch.ErrNoListener) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b.Filters(), nil
}

// Routes are the client routes of the service's interface: its VirtualService's
// rules, then everything else to the service.
func (sharer) Routes(ctx *generator.Context, svc *model.Service, port *model.Port) (*model.Route, error) {
	iface, err := serviceInterface(svc)
	if err != nil {
		return nil, err
	}
	if len(svc.Hosts) == 0 {
		return nil, errors.New("the service has no hosts")
	}
	rules, err := patch.Routes(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	routes := append(fromRules(rules), catchAll(model.OutboundClusterName(port.Number, "", svc.Hosts[0])))
	rc := routeConfig(iface, routes)
	if err := rc.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	return &model.Route{Port: port.Number, Key: iface, Config: rc}, nil
}

// Shared is the dubbo_proxy of every client listener of the port, which fetches the
// port's routes (one route configuration per interface) by name.
func (sharer) Shared(ctx *generator.Context, port uint32, routes []*model.Route) (*model.EnvoyFilter, *model.RouteConfig, error) {
	if ctx.RouteDiscovery == nil {
		return nil, nil, errors.New("no route discovery to share the port's routes through")
	}
	name := patch.SharedObjectName(model.Dubbo, port)
	all := &dubbo.MultipleRouteConfiguration{Name: name}
	for _, r := range routes {
		rc, ok := r.Config.(*dubbo.RouteConfiguration)
		if !ok {
			return nil, nil, fmt.Errorf("routes of interface %s are a %T, not a Dubbo route configuration", r.Key, r.Config)
		}
		all.RouteConfig = append(all.RouteConfig, rc)
	}
	if err := all.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
	}
	cfg := proxyConfig("outbound_" + strconv.FormatUint(uint64(port), 10) + "_dubbo")
	cfg.RouteSpecifier = &dubbo.DubboProxy_Drds{Drds: &dubbo.Drds{
		ConfigSource:    patch.RouteSource(ctx.RouteDiscovery),
		RouteConfigName: name,
	}}
	ef, err := patch.SharedListenerFilter(ctx, model.Dubbo, port, patch.NetworkFilter(FilterName, cfg))
	if err != nil {
		return nil, nil, err
	}
	return ef, &model.RouteConfig{TypeURL: RoutesTypeURL, Name: name, Config: all}, nil
}

// RoutesTypeURL is the xDS type of the route configurations a shared filter names.
const RoutesTypeURL = "type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration"

func serviceInterface(svc *model.Service) (string, error) {
	iface := svc.Annotations[InterfaceAnnotation]
	if iface == "" {
		return "", errors.New(`missing annotation "interface": set it to the Dubbo interface the service serves, e.g. org.apache.dubbo.samples.basic.api.DemoService`)
	}
	return iface, nil
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

// proxyConfig is dubbo_proxy without its routes.
func proxyConfig(statPrefix string) *dubbo.DubboProxy {
	return &dubbo.DubboProxy{
		StatPrefix:        statPrefix,
		ProtocolType:      dubbo.ProtocolType_Dubbo,
		SerializationType: dubbo.SerializationType_Hessian2,
		DubboFilters:      []*dubbo.DubboFilter{{Name: routerFilter}},
	}
}

// inlineFilter is dubbo_proxy with its routes in its own config. Istio's proxy
// accepts multiple_route_config; route_config is deprecated.
func inlineFilter(statPrefix string, rc *dubbo.RouteConfiguration) *patch.Filter {
	cfg := proxyConfig(statPrefix)
	cfg.RouteSpecifier = &dubbo.DubboProxy_MultipleRouteConfig{MultipleRouteConfig: &dubbo.MultipleRouteConfiguration{
		Name:        statPrefix,
		RouteConfig: []*dubbo.RouteConfiguration{rc},
	}}
	return patch.NetworkFilter(FilterName, cfg)
}

func routeConfig(iface string, routes []*dubbo.Route) *dubbo.RouteConfiguration {
	return &dubbo.RouteConfiguration{Name: iface, Interface: iface, Routes: routes}
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
