// Package envoyfilter turns services into EnvoyFilters and keeps the cluster in step:
// generators and their patch helpers, translate, plan, apply, and the debounced loop.
package envoyfilter

import (
	corev1 "k8s.io/api/core/v1"

	"aeraki.io/aeraki/pkg/model"
)

// Context carries the settings every generator sees, and the push's lookups into
// other objects. It is the same for all services of a push.
type Context struct {
	// RootNamespace is Istio's root namespace: outbound EnvoyFilters go there so that
	// they apply to every sidecar.
	RootNamespace string
	// DomainSuffix completes short hosts in VirtualService destinations.
	DomainSuffix string

	// Set per push by ForPush.
	services model.HostIndex
	secret   func(namespace, name string) *corev1.Secret
	// deps, when set, records every lookup, so that a cached result can tell whether
	// the objects it looked at are still the same.
	deps *[]dependency
}

// ForPush returns the context of one push: c completed with the lookups into the
// push's snapshot and services.
func (c *Context) ForPush(snap *model.Snapshot, services []*model.Service) *Context {
	out := *c
	out.services = model.NewHostIndex(services)
	out.secret = snap.Secret
	out.deps = nil
	return &out
}

// Service returns the service of the push that owns a fully qualified host, or nil.
// Generators use it for routes that send traffic to another service.
func (c *Context) Service(host string) *model.Service {
	svc := c.services[host]
	c.record(dependency{kind: hostDependency, name: host}, serviceIdentity(svc))
	return svc
}

// Secret returns a Secret of the push, or nil.
func (c *Context) Secret(namespace, name string) *corev1.Secret {
	s := c.secretOrNil(namespace, name)
	c.record(dependency{kind: secretDependency, namespace: namespace, name: name}, model.SecretVersion(s))
	return s
}

func (c *Context) secretOrNil(namespace, name string) *corev1.Secret {
	if c.secret == nil {
		return nil
	}
	return c.secret(namespace, name)
}

// record notes a lookup and the version of what it found, when c is recording.
func (c *Context) record(d dependency, version string) {
	if c.deps != nil {
		d.version = version
		*c.deps = append(*c.deps, d)
	}
}

// recording returns a copy of c that records its lookups into deps.
func (c *Context) recording(deps *[]dependency) *Context {
	out := *c
	out.deps = deps
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
