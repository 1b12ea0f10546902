// Package plugin lists the generator of every protocol, in one place.
package plugin

import (
	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/plugin/dubbo"
)

// Registry returns the generators by protocol. Ports of a protocol without one are
// left to Istio as plain TCP.
func Registry() envoyfilter.Registry {
	return envoyfilter.Registry{
		model.Dubbo: dubbo.New(),
	}
}
