// Package envoyfilter turns services into EnvoyFilters and keeps the cluster in step:
// generators and their patch helpers, translate, plan, apply, and the debounced loop.
package envoyfilter

import (
	"aeraki.io/aeraki/pkg/model"
)

// Context carries the settings every generator sees. It is the same for all services
// of a push.
type Context struct {
	// RootNamespace is Istio's root namespace: outbound EnvoyFilters go there so that
	// they apply to every sidecar.
	RootNamespace string
	// DomainSuffix completes short hosts in VirtualService destinations.
	DomainSuffix string
}

// Generator builds the EnvoyFilters of one service port of its protocol. It is a pure
// function of its inputs: an error says what the user must fix, and no filters are
// returned with it.
type Generator interface {
	Generate(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error)
}

// GeneratorFunc adapts a function to Generator.
type GeneratorFunc func(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error)

// Generate calls f.
func (f GeneratorFunc) Generate(ctx *Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	return f(ctx, svc, port)
}

// Registry maps each protocol to its generator. It is built in one place (see package
// plugin) and read-only afterwards.
type Registry map[model.Protocol]Generator
