// Package dubbo generates Envoy's dubbo_proxy filter for `tcp-dubbo` ports.
package dubbo

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
	// InterfaceAnnotation on the ServiceEntry (or Service) names the Dubbo interfaces
	// it serves, comma-separated; without it, it serves every interface.
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
	ifaces, err := Interfaces(svc)
	if err != nil {
		return nil, err
	}
	rules, err := patch.Routes(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	return patch.ListenerFilters(ctx, svc, port, patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		if l.Direction == patch.Inbound {
			return serverFilter(l), nil
		}
		// Clients route; calls of each interface by the rules, then to the service.
		rcs := make([]*dubbo.RouteConfiguration, 0, len(ifaces))
		for _, iface := range ifaces {
			rcs = append(rcs, routeConfig(iface, append(fromRules(rules), catchAll(l.Cluster))))
		}
		return inlineFilter(l.StatPrefix, rcs...), nil
	})
}

// Keys are the interfaces: Dubbo requests name theirs, and the shared routes hold
// one route configuration per interface ("*" for a service of every interface).
func (sharer) Keys(svc *model.Service, _ *model.Port) []string {
	ifaces, _ := Interfaces(svc) // none when invalid: its generation reports it
	return ifaces
}

// Inbound puts dubbo_proxy on the server side only, where everything goes to the
// workload; a service without workloads in the mesh has none.
func (sharer) Inbound(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	b, err := patch.NewBuilder(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	err = b.ListenerFilter(patch.ReplaceTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		return serverFilter(l), nil
	}, patch.Inbound)
	if errors.Is(err, patch.ErrNoListener) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b.Filters(), nil
}

// serverFilter is the server side's dubbo_proxy: every interface the workload
// exports goes to it. The server side does not route, and a workload serves more
// interfaces than any one service of it may name.
func serverFilter(l *patch.Listener) *patch.Filter {
	return inlineFilter(l.StatPrefix, routeConfig(AnyInterface, []*dubbo.Route{catchAll(l.Cluster)}))
}

// Routes are the client routes of each of the service's interfaces: its
// VirtualService's rules, then everything else to the service.
func (sharer) Routes(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.Route, error) {
	if len(svc.Hosts) == 0 {
		return nil, errors.New("the service has no hosts")
	}
	rules, err := patch.Routes(ctx, svc, port)
	if err != nil {
		return nil, err
	}
	ifaces, err := Interfaces(svc)
	if err != nil {
		return nil, err
	}
	var out []*model.Route
	for _, iface := range ifaces {
		rc := routeConfig(iface, append(fromRules(rules), catchAll(model.OutboundClusterName(port.Number, "", svc.Hosts[0]))))
		if err := rc.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%w: %w", generator.ErrInvalidFilter, err)
		}
		out = append(out, &model.Route{Port: port.Number, Key: iface, Config: rc})
	}
	return out, nil
}

// Shared is the dubbo_proxy of every client listener of the port, which fetches the
// port's routes (one route configuration per interface) by name.
func (sharer) Shared(ctx *generator.Context, port uint32, routes []*model.Route) (*model.EnvoyFilter, *model.RouteConfig, error) {
	if ctx.RouteDiscovery == nil {
		return nil, nil, errors.New("no route discovery to share the port's routes through")
	}
	name := patch.SharedObjectName(model.Dubbo, port)
	all := &dubbo.MultipleRouteConfiguration{Name: name}
	// Envoy takes the first route configuration whose interface matches: the one
	// of every interface goes last, after those of named interfaces.
	routes = slices.Clone(routes)
	slices.SortStableFunc(routes, func(a, b *model.Route) int {
		return cmp.Compare(boolInt(a.Key == AnyInterface), boolInt(b.Key == AnyInterface))
	})
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

// AnyInterface is Envoy's Dubbo route configuration interface for every interface.
const AnyInterface = "*"

// Interfaces are the interfaces a service serves: its InterfaceAnnotation, a
// comma-separated list, sorted; every interface ("*") without it. A name that is
// no Java type name is an error: a typo would route nothing.
func Interfaces(svc *model.Service) ([]string, error) {
	var out []string
	for _, iface := range strings.Split(svc.Annotations[InterfaceAnnotation], ",") {
		iface = strings.TrimSpace(iface)
		switch {
		case iface == "":
			continue
		case iface != AnyInterface && !javaTypeName.MatchString(iface):
			return nil, fmt.Errorf("annotation %q: %q is not a Dubbo interface (a Java type name such as org.example.DemoService, or %q for every interface)",
				InterfaceAnnotation, model.Shorten(iface, 100), AnyInterface)
		}
		out = append(out, iface)
	}
	if len(out) == 0 || slices.Contains(out, AnyInterface) {
		return []string{AnyInterface}, nil
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// javaTypeName is a dotted Java type name.
var javaTypeName = regexp.MustCompile(`^[\p{L}_$][\p{L}\p{N}_$]*(\.[\p{L}_$][\p{L}\p{N}_$]*)*$`)

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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
func inlineFilter(statPrefix string, rcs ...*dubbo.RouteConfiguration) *patch.Filter {
	cfg := proxyConfig(statPrefix)
	cfg.RouteSpecifier = &dubbo.DubboProxy_MultipleRouteConfig{MultipleRouteConfig: &dubbo.MultipleRouteConfiguration{
		Name:        statPrefix,
		RouteConfig: rcs,
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
