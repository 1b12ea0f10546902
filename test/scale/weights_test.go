package scale

import (
	"fmt"
	"strconv"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dubbo "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/dubbo_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	clientalpha "istio.io/client-go/pkg/apis/networking/v1alpha3"
)

// The harness reads a service's routes the same way on both sides of istiod: from
// the dubbo_proxy our EnvoyFilter patches in, and from the one the sidecar's listener
// carries. Both come down to the weighted clusters of its routes.

// routeWeights is the form both sides are compared in: the weighted clusters of a
// dubbo_proxy's routes in order, "cluster=weight" joined by commas. Only
// multiple_route_config is read: the generator writes no other (route_config is
// deprecated).
func routeWeights(dp *dubbo.DubboProxy) string {
	var out []string
	for _, rc := range dp.GetMultipleRouteConfig().GetRouteConfig() {
		for _, r := range rc.GetRoutes() {
			for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
				out = append(out, c.GetName()+"="+strconv.Itoa(int(c.GetWeight().GetValue())))
			}
		}
	}
	return strings.Join(out, ",")
}

// wantWeights is routeWeights of a service of the harness, host h, whose
// VirtualService sends v1 percent to subset v1 and the rest to v2.
func wantWeights(h string, v1 int) string {
	cluster := func(subset string) string { return fmt.Sprintf("outbound|%d|%s|%s", dubboPort, subset, h) }
	return fmt.Sprintf("%s=%d,%s=%d", cluster("v1"), v1, cluster("v2"), 100-v1)
}

// filterDubbo decodes f's dubbo_proxy; nil if f is another filter.
func filterDubbo(f *listener.Filter) (*dubbo.DubboProxy, error) {
	if f.GetName() != dubboFilter {
		return nil, nil
	}
	dp := &dubbo.DubboProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(dp); err != nil {
		return nil, fmt.Errorf("decode the dubbo_proxy config: %w", err)
	}
	return dp, nil
}

// listenerDubbo returns the first dubbo_proxy of a listener's filter chains, or nil.
func listenerDubbo(l *listener.Listener) (*dubbo.DubboProxy, error) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if dp, err := filterDubbo(f); dp != nil || err != nil {
				return dp, err
			}
		}
	}
	return nil, nil
}

// envoyFilterDubbo returns the first dubbo_proxy an EnvoyFilter patches in, or nil:
// each patch value is decoded as the Envoy network filter it stands for.
func envoyFilterDubbo(ef *clientalpha.EnvoyFilter) (*dubbo.DubboProxy, error) {
	for _, p := range ef.Spec.GetConfigPatches() {
		v := p.GetPatch().GetValue()
		if v.GetFields()["name"].GetStringValue() != dubboFilter {
			continue
		}
		js, err := protojson.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("EnvoyFilter %s/%s: %w", ef.Namespace, ef.Name, err)
		}
		f := &listener.Filter{}
		if err := protojson.Unmarshal(js, f); err != nil {
			return nil, fmt.Errorf("EnvoyFilter %s/%s: the patch value is no network filter: %w", ef.Namespace, ef.Name, err)
		}
		dp, err := filterDubbo(f)
		if err != nil {
			return nil, fmt.Errorf("EnvoyFilter %s/%s: %w", ef.Namespace, ef.Name, err)
		}
		return dp, nil
	}
	return nil, nil
}
