// Package envoyfilter turns services into EnvoyFilters and keeps the cluster in step:
// generators and their patch helpers, translate, plan, apply, and the debounced loop.
package envoyfilter

import (
	corev1 "k8s.io/api/core/v1"

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
	// Services finds the other services of the push by host, for routes that send
	// traffic to another service. Set per push (see ForPush).
	Services model.HostIndex
	// Secret returns a Secret of the push's snapshot, or nil. Set per push.
	Secret func(namespace, name string) *corev1.Secret
}

// ForPush returns the context of one push: c completed with the lookups into the
// push's snapshot and services.
func (c *Context) ForPush(snap *model.Snapshot, services []*model.Service) *Context {
	out := *c
	out.Services = model.NewHostIndex(services)
	out.Secret = snap.Secret
	if out.Secret == nil {
		out.Secret = func(string, string) *corev1.Secret { return nil }
	}
	return &out
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
