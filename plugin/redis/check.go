package redis

import (
	"fmt"
	"slices"
	"strings"

	"istio.io/istio/pkg/config"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/envoyfilter"
	"aeraki.io/aeraki/pkg/model"
)

// Verdict is what the Ready condition of a RedisService or RedisDestination says.
type Verdict struct {
	Ready bool
	// Reason is one of the v1alpha1.Reason constants.
	Reason  string
	Message string
}

// Check says whether obj, a *v1alpha1.RedisService or *v1alpha1.RedisDestination, is
// in effect on the services of a push (ctx as ForPush made it), for the status
// reconciler. It binds obj to services and resolves it per tcp-redis port with the
// generator's own code:
//   - NoMatchingService: no service with a tcp-redis port has one of its hosts;
//   - Conflict: an object of the same kind earlier by namespace/name binds one of the
//     same services (it is in effect there, obj is not), or two routes have the same
//     prefix, or two have no match;
//   - SecretNotFound, SecretKeyNotFound: the auth Secret or one of its keys is missing;
//   - Invalid: the generator would reject it for another reason;
//   - else Ready, Accepted, naming the services.
//
// Messages never hold a credential.
func Check(ctx *envoyfilter.Context, services []*model.Service, obj any) Verdict {
	switch o := obj.(type) {
	case *v1alpha1.RedisService:
		return check(ctx, services, "RedisService", model.RedisConfig(o),
			func(svc *model.Service) []string { return keysOf(svc.RedisServices) },
			func(svc *model.Service, port *model.Port) error {
				cfg, err := resolveService(ctx, svc, port, o)
				if err != nil {
					return err
				}
				return buildFilters(svc, port, cfg, nil)
			})
	case *v1alpha1.RedisDestination:
		return check(ctx, services, "RedisDestination", model.RedisConfig(o),
			func(svc *model.Service) []string { return keysOf(svc.RedisDestinations) },
			func(svc *model.Service, port *model.Port) error {
				dest, err := resolveDestination(ctx, svc, o)
				if err != nil {
					return err
				}
				if _, _, err := clusterPatches(svc, port, dest); err != nil {
					return err
				}
				cfg, err := resolveService(ctx, svc, port, nil)
				if err != nil {
					return err
				}
				return buildFilters(svc, port, cfg, dest)
			})
	default:
		return Verdict{Reason: v1alpha1.ReasonInvalid, Message: fmt.Sprintf("%T is neither a RedisService nor a RedisDestination", obj)}
	}
}

func check(ctx *envoyfilter.Context, services []*model.Service, kind string, obj config.Config,
	bound func(*model.Service) []string, resolve func(*model.Service, *model.Port) error,
) Verdict {
	key := obj.Namespace + "/" + obj.Name
	var applied []string
	for _, svc := range services {
		ports := redisPorts(svc)
		if len(ports) == 0 || len(boundHosts(ctx, svc, obj)) == 0 {
			continue
		}
		name := svc.Kind() + " " + svc.Namespace + "/" + svc.ObjectName()
		// The service's objects are sorted by namespace/name: the first is in effect.
		if keys := bound(svc); len(keys) > 0 && keys[0] < key {
			return Verdict{Reason: v1alpha1.ReasonConflict, Message: fmt.Sprintf(
				"%s %s, earlier by namespace/name, already configures %s: this one is not in effect there", kind, keys[0], name)}
		}
		for _, port := range ports {
			if err := resolve(svc, port); err != nil {
				return Verdict{Reason: reasonOf(err), Message: fmt.Sprintf("%s port %d: %v", name, port.Number, err)}
			}
		}
		applied = append(applied, name)
	}
	if len(applied) == 0 {
		return Verdict{Reason: v1alpha1.ReasonNoMatchingService, Message: fmt.Sprintf(
			"no service with a tcp-redis port has any of the hosts %s", strings.Join(model.HostsOf(obj, ctx.DomainSuffix), ", "))}
	}
	return Verdict{Ready: true, Reason: v1alpha1.ReasonAccepted, Message: "applies to " + strings.Join(applied, ", ")}
}

func keysOf[T any](cfgs []*model.Config[T]) []string {
	out := make([]string, 0, len(cfgs))
	for _, c := range cfgs {
		out = append(out, c.Namespace+"/"+c.Name)
	}
	return out
}

func redisPorts(svc *model.Service) []*model.Port {
	return slices.DeleteFunc(slices.Clone(svc.Ports), func(p *model.Port) bool { return p.Protocol != model.Redis })
}

// buildFilters builds and validates the filters the generator would make of cfg and
// dest for one port, for a listener of each direction, as Check's last step.
func buildFilters(svc *model.Service, port *model.Port, cfg *proxyConfig, dest *destinationConfig) error {
	if len(svc.Hosts) == 0 {
		return invalid("the service has no hosts")
	}
	out := model.OutboundClusterName(port.Number, "", svc.Hosts[0])
	in := model.InboundClusterName(port.TargetPort)
	for _, l := range []*envoyfilter.Listener{
		{Direction: envoyfilter.Outbound, Port: port.Number, Host: svc.Hosts[0], Cluster: out, StatPrefix: out},
		{Direction: envoyfilter.Inbound, Port: port.TargetPort, Cluster: in, StatPrefix: in},
	} {
		f, err := proxyFilter(l, cfg, dest)
		if err != nil {
			return err
		}
		if _, err := envoyfilter.FilterValue(f); err != nil {
			return err
		}
	}
	return nil
}
