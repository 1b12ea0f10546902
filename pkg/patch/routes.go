package patch

import (
	"errors"
	"fmt"
	"maps"
	"regexp/syntax"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// Route is one routing rule of a VirtualService, checked and resolved, in the terms a
// protocol filter's route table needs. Protocols map it to their own route types.
type Route struct {
	// Where names the rule for messages: "VirtualService <ns>/<name>, http rule <name or #index>".
	Where string
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
// are ordered as Istio prefers them, see model.Service.VirtualServices), in rule order. Nil means: no VirtualService,
// route everything to the service's own cluster. Unsupported or invalid input is an
// error naming the VirtualService and the rule.
func Routes(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*Route, error) {
	if len(svc.VirtualServices) == 0 {
		return nil, nil
	}
	vs := svc.VirtualServices[0]
	if len(vs.Spec.GetHosts()) == 0 {
		return nil, fmt.Errorf("VirtualService %s/%s has no hosts", vs.Namespace, vs.Name)
	}
	var out []*Route
	for i, rule := range vs.Spec.GetHttp() {
		name := rule.GetName()
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		where := fmt.Sprintf("VirtualService %s/%s, http rule %s", vs.Namespace, vs.Name, name)
		r, err := route(ctx, svc, port, vs, rule)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		r.Where = where
		out = append(out, r)
	}
	return out, nil
}

func route(ctx *generator.Context, svc *model.Service, port *model.Port, vs *model.Config[*networking.VirtualService], rule *networking.HTTPRoute) (*Route, error) {
	r := &Route{}
	for _, m := range rule.GetMatch() {
		rm := &RouteMatch{Method: m.GetMethod(), Headers: m.GetHeaders()}
		// An empty prefix matches every method, as Istio reads it for HTTP; Envoy's
		// string matcher would reject it.
		if p, ok := rm.Method.GetMatchType().(*networking.StringMatch_Prefix); ok && p.Prefix == "" {
			rm.Method = nil
		}
		if err := checkStringMatch("method", rm.Method); err != nil {
			return nil, err
		}
		for _, name := range slices.Sorted(maps.Keys(rm.Headers)) {
			if err := checkHeader(name, rm.Headers[name]); err != nil {
				return nil, err
			}
		}
		r.Matches = append(r.Matches, rm)
	}
	dests := rule.GetRoute()
	if len(dests) == 0 {
		return nil, errors.New("no route destinations")
	}
	// Summed wide: weights are int32 each, and many of them must not wrap to 100.
	var sum int64
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
		sum += int64(weight)
		// A destination of weight 0 gets nothing; Envoy's weights must be at least 1.
		if weight > 0 {
			r.Clusters = append(r.Clusters, WeightedCluster{Name: model.OutboundClusterName(number, subset, host), Weight: uint32(weight)})
		}
	}
	if sum != 100 {
		return nil, fmt.Errorf("destination weights add up to %d, not 100", sum)
	}
	return r, nil
}

func hasSubset(ctx *generator.Context, svc *model.Service, host, subset string) bool {
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

// checkHeader rejects header matches Envoy would refuse: an empty name, one with NUL,
// CR or LF, and a bad string match.
func checkHeader(name string, m *networking.StringMatch) error {
	if name == "" {
		return errors.New("a header match has an empty header name")
	}
	if strings.ContainsAny(name, "\x00\r\n") {
		return fmt.Errorf("header name %q contains NUL, CR or LF", name)
	}
	return checkStringMatch("header "+name, m)
}

// maxRegexProgramSize is the largest compiled regex Envoy accepts by default (its
// runtime key re2.max_program_size.error_level): a larger one makes the sidecar
// reject the whole listener.
const maxRegexProgramSize = 100

// checkStringMatch rejects what no protocol filter can match on: an empty match, an
// empty regex, a regex that does not compile (Envoy uses RE2, as Go's regexp does),
// and one whose program is larger than Envoy accepts (Go's compiler is a port of
// RE2's and counts the same instructions).
func checkStringMatch(what string, m *networking.StringMatch) error {
	if m == nil {
		return nil
	}
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact, *networking.StringMatch_Prefix:
		return nil
	case *networking.StringMatch_Regex:
		if v.Regex == "" {
			return fmt.Errorf("%s regex is empty: give a regex, or use exact or prefix", what)
		}
		re, err := syntax.Parse(v.Regex, syntax.Perl)
		if err != nil {
			return fmt.Errorf("%s regex %q does not compile: %w", what, model.Shorten(v.Regex, 80), err)
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			return fmt.Errorf("%s regex %q does not compile: %w", what, model.Shorten(v.Regex, 80), err)
		}
		if n := len(prog.Inst); n > maxRegexProgramSize {
			return fmt.Errorf("%s regex %q compiles to %d instructions, more than the %d Envoy accepts: simplify it", what, model.Shorten(v.Regex, 80), n, maxRegexProgramSize)
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

// HeaderMatchers converts checked header matches to Envoy's, ordered by name. An empty
// prefix means "present with any value", as Istio reads it for HTTP; Envoy's string
// matcher rejects an empty prefix.
func HeaderMatchers(headers map[string]*networking.StringMatch) []*routev3.HeaderMatcher {
	out := make([]*routev3.HeaderMatcher, 0, len(headers))
	for _, n := range slices.Sorted(maps.Keys(headers)) {
		h := &routev3.HeaderMatcher{Name: n}
		if p, ok := headers[n].GetMatchType().(*networking.StringMatch_Prefix); ok && p.Prefix == "" {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		} else {
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: StringMatcher(headers[n])}
		}
		out = append(out, h)
	}
	return out
}
