package controlplane

import (
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	clientnetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FilterNames lists the network filters of every filter chain of a listener, in
// order; those of the default filter chain are prefixed "default:".
func FilterNames(l *listener.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			out = append(out, f.GetName())
		}
	}
	for _, f := range l.GetDefaultFilterChain().GetFilters() {
		out = append(out, "default:"+f.GetName())
	}
	return out
}

// RateLimitFilterName is the network filter RateLimitFilter adds.
const RateLimitFilterName = "envoy.filters.network.local_ratelimit"

// RateLimitFilter is a user's EnvoyFilter (not ours: no labels) in the root
// namespace that puts local_ratelimit before tcp_proxy on an outbound listener: a
// filter a test sidecar can be told to lack.
func RateLimitFilter(name, listenerName string) (*clientnetworkingv1alpha3.EnvoyFilter, error) {
	value, err := structpb.NewStruct(map[string]any{
		"name": RateLimitFilterName,
		"typed_config": map[string]any{
			"@type":        "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
			"stat_prefix":  "test",
			"token_bucket": map[string]any{"max_tokens": 100, "fill_interval": "1s"},
		},
	})
	if err != nil {
		return nil, err
	}
	return &clientnetworkingv1alpha3.EnvoyFilter{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: IstioNamespace},
		Spec: networkingv1alpha3.EnvoyFilter{
			ConfigPatches: []*networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectPatch{{
				ApplyTo: networkingv1alpha3.EnvoyFilter_NETWORK_FILTER,
				Match: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch{
					Context: networkingv1alpha3.EnvoyFilter_SIDECAR_OUTBOUND,
					ObjectTypes: &networkingv1alpha3.EnvoyFilter_EnvoyConfigObjectMatch_Listener{
						Listener: &networkingv1alpha3.EnvoyFilter_ListenerMatch{
							Name: listenerName,
							FilterChain: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterChainMatch{
								Filter: &networkingv1alpha3.EnvoyFilter_ListenerMatch_FilterMatch{Name: "envoy.filters.network.tcp_proxy"},
							},
						},
					},
				},
				Patch: &networkingv1alpha3.EnvoyFilter_Patch{
					Operation: networkingv1alpha3.EnvoyFilter_Patch_INSERT_BEFORE,
					Value:     value,
				},
			}},
		},
	}, nil
}
