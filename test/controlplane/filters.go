package controlplane

import listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

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
