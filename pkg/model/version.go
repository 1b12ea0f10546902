package model

import (
	"encoding/json"
	"hash"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"
)

// ConfigVersion is the resource version of c, or a hash of its content when it has
// none (objects read from files).
func ConfigVersion(c Object) string {
	if c.ResourceVersion != "" {
		return c.ResourceVersion
	}
	h := fnv.New64a()
	writeSpec(h, c.Spec)
	return "h" + strconv.FormatUint(h.Sum64(), 36)
}

// SecretVersion is the resource version of a Secret, or a hash of its data; "" for
// no Secret.
func SecretVersion(s *Secret) string {
	if s == nil {
		return ""
	}
	if s.Forbidden {
		return "forbidden"
	}
	if s.ResourceVersion != "" {
		return s.ResourceVersion
	}
	h := fnv.New64a()
	writeMap(h, s.Data)
	return "h" + strconv.FormatUint(h.Sum64(), 36)
}

// serviceVersion fingerprints what a Service is built from. The ServiceEntry is
// hashed by content, not taken by resource version: istiod sends the ServiceEntries
// it derives from Kubernetes Services without one, and the xDS client's store then
// stamps a new version on every resend.
func serviceVersion(c *Object, kube *KubeService, svc *Service, workloads []*Object) string {
	h := fnv.New64a()
	write := func(ss ...string) {
		for _, s := range ss {
			_, _ = h.Write([]byte(s))
			_, _ = h.Write([]byte{0})
		}
	}
	write(c.Namespace, c.Name)
	writeSpec(h, c.Spec)
	writeMap(h, svc.Annotations)
	if kube != nil {
		write("kube", kube.ResourceVersion, "endpoints")
		write(kube.Endpoints...)
	}
	related := func(kind, ns, name, version string) { write(kind, ns, name, version) }
	for _, x := range svc.VirtualServices {
		related("vs", x.Namespace, x.Name, x.Version)
	}
	for _, x := range svc.DestinationRules {
		related("dr", x.Namespace, x.Name, x.Version)
	}
	// istiod sends no status: the allocated addresses come from the apiserver.
	for _, a := range svc.Allocated {
		write("allocated", a.Host, a.Address)
	}
	// Whether a port's wildcard listener is the service's depends on other services.
	for _, p := range svc.Ports {
		if p.Wildcard {
			write("wildcard", strconv.FormatUint(uint64(p.Number), 10))
		}
	}
	// The mesh's export defaults are not in the ServiceEntry.
	if svc.ExportTo != nil {
		write("export")
		write(svc.ExportTo...)
	}
	for _, v := range svc.Views {
		write("view", v.Namespace)
		for _, x := range v.VirtualServices {
			related("vs", x.Namespace, x.Name, x.Version)
		}
		for _, x := range v.DestinationRules {
			related("dr", x.Namespace, x.Name, x.Version)
		}
	}
	for _, x := range workloads {
		related("we", x.Namespace, x.Name, ConfigVersion(*x))
	}
	for _, x := range svc.RedisServices {
		related("rs", x.Namespace, x.Name, x.Version)
	}
	for _, x := range svc.RedisDestinations {
		related("rd", x.Namespace, x.Name, x.Version)
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

func writeSpec(h hash.Hash64, spec any) {
	if m, ok := spec.(proto.Message); ok {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err == nil {
			_, _ = h.Write(b)
			return
		}
	}
	// Not a proto (our Redis objects), or one that cannot be encoded: its JSON.
	b, _ := json.Marshal(spec)
	_, _ = h.Write(b)
}

func writeMap[V string | []byte](h hash.Hash64, m map[string]V) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		_, _ = h.Write([]byte(k))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(m[k]))
		_, _ = h.Write([]byte{0})
	}
}
