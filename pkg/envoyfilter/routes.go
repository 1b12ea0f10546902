package envoyfilter

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
)

// Route is one routing rule of a VirtualService, checked and resolved, in the terms a
// protocol filter's route table needs. Protocols map it to their own route types.
type Route struct {
	// Name is the rule's name in the VirtualService, if any.
	Name string
	// Matches: any one of them selects the route; none means every request.
	Matches []*RouteMatch
	// Clusters are Istio's cluster names with weights summing to 100.
	Clusters []WeightedCluster
}

// RouteMatch is one match entry of a rule.
type RouteMatch struct {
	// Method matches the RPC method name; nil matches any method.
	Method *networking.StringMatch
	// Headers match request headers (Dubbo attachments, Thrift headers), by name.
	Headers map[string]*networking.StringMatch
}

// WeightedCluster is a destination cluster with its share of requests, in percent.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// Routes returns the routing rules for a service port from the first VirtualService
// bound to the service (Istio gives a host to one VirtualService on sidecars; they
// are ordered by namespace and name), in rule order. Nil means: no VirtualService,
// route everything to the service's own cluster. Unsupported or invalid input is an
// error naming the VirtualService and the rule.
func Routes(ctx *Context, svc *model.Service, port *model.Port) ([]*Route, error) {
	if len(svc.VirtualServices) == 0 {
		return nil, nil
	}
	vs := svc.VirtualServices[0]
	if len(vs.Spec.GetHosts()) == 0 {
		return nil, fmt.Errorf("VirtualService %s/%s has no hosts", vs.Namespace, vs.Name)
	}
	var out []*Route
	for i, rule := range vs.Spec.GetHttp() {
		r, err := route(ctx, svc, port, vs, rule)
		if err != nil {
			name := rule.GetName()
			if name == "" {
				name = fmt.Sprintf("#%d", i)
			}
			return nil, fmt.Errorf("VirtualService %s/%s, http rule %s: %w", vs.Namespace, vs.Name, name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func route(ctx *Context, svc *model.Service, port *model.Port, vs *model.Config[*networking.VirtualService], rule *networking.HTTPRoute) (*Route, error) {
	r := &Route{Name: rule.GetName()}
	for _, m := range rule.GetMatch() {
		rm := &RouteMatch{Method: m.GetMethod(), Headers: m.GetHeaders()}
		if err := checkStringMatch("method", rm.Method); err != nil {
			return nil, err
		}
		for name, h := range rm.Headers {
			if err := checkStringMatch("header "+name, h); err != nil {
				return nil, err
			}
		}
		r.Matches = append(r.Matches, rm)
	}
	dests := rule.GetRoute()
	if len(dests) == 0 {
		return nil, errors.New("no route destinations")
	}
	var sum int32
	for _, d := range dests {
		host := string(model.ResolveHost(d.GetDestination().GetHost(), vs.Namespace, ctx.DomainSuffix))
		if host == "" {
			return nil, errors.New("a destination has no host")
		}
		number := d.GetDestination().GetPort().GetNumber()
		if number == 0 {
			number = port.Number
		}
		subset := d.GetDestination().GetSubset()
		if subset != "" && slices.Contains(svc.Hosts, host) && !hasSubset(ctx, svc, host, subset) {
			return nil, fmt.Errorf("subset %q of %s is not defined in any DestinationRule", subset, host)
		}
		weight := d.GetWeight()
		if len(dests) == 1 && weight == 0 {
			weight = 100
		}
		if weight < 0 {
			return nil, fmt.Errorf("negative weight %d", weight)
		}
		sum += weight
		r.Clusters = append(r.Clusters, WeightedCluster{Name: model.OutboundClusterName(number, subset, host), Weight: uint32(weight)})
	}
	if sum != 100 {
		return nil, fmt.Errorf("destination weights add up to %d, not 100", sum)
	}
	return r, nil
}

func hasSubset(ctx *Context, svc *model.Service, host, subset string) bool {
	for _, dr := range svc.DestinationRules {
		if string(model.ResolveHost(dr.Spec.GetHost(), dr.Namespace, ctx.DomainSuffix)) != host {
			continue
		}
		for _, s := range dr.Spec.GetSubsets() {
			if s.GetName() == subset {
				return true
			}
		}
	}
	return false
}

// checkStringMatch rejects what no protocol filter can match on: an empty match and
// a regex that does not compile (Envoy uses RE2, as Go's regexp does).
func checkStringMatch(what string, m *networking.StringMatch) error {
	if m == nil {
		return nil
	}
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact, *networking.StringMatch_Prefix:
		return nil
	case *networking.StringMatch_Regex:
		if _, err := regexp.Compile(v.Regex); err != nil {
			return fmt.Errorf("%s regex %q does not compile: %w", what, v.Regex, err)
		}
		return nil
	default:
		return fmt.Errorf("%s match is empty: give exact, prefix or regex", what)
	}
}

// StringMatcher converts a checked Istio string match to Envoy's.
func StringMatcher(m *networking.StringMatch) *matcher.StringMatcher {
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: v.Regex}}}
	}
	return nil
}

// HeaderMatchers converts checked header matches to Envoy's, ordered by name.
func HeaderMatchers(headers map[string]*networking.StringMatch) []*routev3.HeaderMatcher {
	names := make([]string, 0, len(headers))
	for n := range headers {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*routev3.HeaderMatcher, 0, len(names))
	for _, n := range names {
		out = append(out, &routev3.HeaderMatcher{
			Name:                 n,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: StringMatcher(headers[n])},
		})
	}
	return out
}
