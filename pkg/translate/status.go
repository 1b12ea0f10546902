package translate

import (
	"fmt"
	"slices"
	"strings"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// verdict says, from the push's own results, whether a RedisService or
// RedisDestination is in effect, as its Ready condition reports; bound are the
// services with a tcp-redis port and one of its hosts, in the order of a
// translation:
//   - Unreadable: its spec as stored cannot be read (and it names no service, or
//     the services it names fail for it);
//   - NoMatchingService: no service with a tcp-redis port has one of its hosts;
//   - Conflict: an object of the same kind earlier by namespace/name binds one of the
//     same services (it is in effect there, this one is not);
//   - the Reason of the first generation error the object caused (see
//     generator.ObjectError: Conflict, SecretNotFound, SecretKeyNotFound, Invalid);
//   - ServiceFailed: a service it configures failed for another reason (another port,
//     a second service with the same host and port), so it is not in effect there;
//   - else Ready, Accepted, naming the services.
//
// Messages never hold a credential.
func verdict(ref model.ObjectRef, c model.Object, snap *model.Snapshot, bound []*model.Service, failed map[string]*ServiceError) model.Verdict {
	v := verdictOf(ref, c, snap, bound, failed)
	v.Generation = c.Generation
	return v
}

func verdictOf(ref model.ObjectRef, c model.Object, snap *model.Snapshot, bound []*model.Service, failed map[string]*ServiceError) model.Verdict {
	// The first service that makes the object fail decides its verdict.
	var applied []string
	for _, svc := range bound {
		refs := refsOf(model.KindRedisService, svc.RedisServices)
		if ref.Kind == model.KindRedisDestination {
			refs = refsOf(model.KindRedisDestination, svc.RedisDestinations)
		}
		j := slices.Index(refs, ref)
		if j < 0 {
			continue
		}
		name := svc.Kind() + " " + svc.Namespace + "/" + svc.ObjectName()
		// The service's objects are sorted by namespace/name: the first is in effect.
		if j > 0 {
			return model.Verdict{Reason: redisspec.ReasonConflict, Message: fmt.Sprintf(
				"%s, earlier by namespace/name, already configures %s: this one is not in effect there", refs[0], name)}
		}
		if serr := failed[svc.Key()]; serr != nil {
			return *failure(ref, name, serr)
		}
		applied = append(applied, name)
	}
	if len(applied) > 0 {
		return model.Verdict{Ready: true, Reason: redisspec.ReasonAccepted, Message: "applies to " + strings.Join(applied, ", ")}
	}
	return unbound(c, ref.Kind, snap, bound)
}

// failure is the verdict of an object on a service that failed: the object's own
// error when it caused the failure, else ServiceFailed with the service's error.
func failure(ref model.ObjectRef, name string, serr *ServiceError) *model.Verdict {
	for _, oe := range generator.ObjectErrors(serr.Err) {
		if oe.Ref == ref {
			return &model.Verdict{Reason: oe.Reason, Message: fmt.Sprintf("%s port %d: %v", name, serr.Port.Number, oe.Err)}
		}
	}
	return &model.Verdict{Reason: redisspec.ReasonServiceFailed, Message: fmt.Sprintf(
		"%s cannot be generated, so this is not in effect there: port %d (%s): %v", name, serr.Port.Number, serr.Protocol, serr.Err)}
}

func refsOf[T any](kind string, cfgs []*model.Config[T]) []model.ObjectRef {
	out := make([]model.ObjectRef, 0, len(cfgs))
	for _, c := range cfgs {
		out = append(out, model.ObjectRef{Kind: kind, Namespace: c.Namespace, Name: c.Name})
	}
	return out
}

// unbound is the verdict of an object that configures no service: a wildcard host, a
// service of another namespace it may not configure, or no service with its hosts.
func unbound(c model.Object, kind string, snap *model.Snapshot, services []*model.Service) model.Verdict {
	if why := redisspec.UnreadableOf(c.Spec); why != "" {
		return model.Verdict{Reason: redisspec.ReasonUnreadable, Message: redisspec.UnreadableMessage(why)}
	}
	hosts := model.HostsOf(c, snap.DomainSuffix)
	if len(model.Bindable([]model.Object{c}, snap.DomainSuffix)) == 0 {
		return model.Verdict{Reason: redisspec.ReasonInvalid, Message: fmt.Sprintf(
			"the hosts %s include a wildcard, which is refused: a %s configures the services it names, each by its host",
			strings.Join(hosts, ", "), kind)}
	}
	var foreign []string
	for _, svc := range services {
		if model.InScope(c.Namespace, svc.Namespace, snap.RootNamespace) {
			continue
		}
		if slices.ContainsFunc(svc.Hosts, func(h string) bool { return slices.Contains(hosts, h) }) {
			foreign = append(foreign, svc.Kind()+" "+svc.Namespace+"/"+svc.ObjectName())
		}
	}
	if len(foreign) > 0 {
		return model.Verdict{Reason: redisspec.ReasonOtherNamespace, Message: fmt.Sprintf(
			"%s has these hosts but is in another namespace: a %s configures only services of its own namespace "+
				"(one in the root namespace %s configures any)", strings.Join(foreign, ", "), kind, snap.RootNamespace)}
	}
	return model.Verdict{Reason: redisspec.ReasonNoMatchingService, Message: fmt.Sprintf(
		"no service with a tcp-redis port has any of the hosts %s", strings.Join(hosts, ", "))}
}

func hasRedisPort(svc *model.Service) bool {
	if svc == nil {
		return false
	}
	return slices.ContainsFunc(svc.Ports, func(p *model.Port) bool { return p.Protocol == model.Redis })
}
