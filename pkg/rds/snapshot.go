package rds

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// resourceSet is the content of one type URL, immutable once built.
type resourceSet struct {
	// version is the type's version: a hash of every name and resource version.
	version   string
	resources map[string]types.ResourceWithTTL
	plain     map[string]types.Resource
	// versions are the resources' own versions, which delta responses carry.
	versions map[string]string
}

// newResourceSet checks and copies resources of typeURL and computes their versions.
// Resources are cloned, so the caller may go on changing its messages.
func newResourceSet(typeURL string, resources map[string]proto.Message) (*resourceSet, error) {
	slash := strings.LastIndexByte(typeURL, '/')
	if slash < 0 || slash == len(typeURL)-1 {
		return nil, fmt.Errorf("type URL %q: want <prefix>/<message full name>", typeURL)
	}
	// The cache marshals every resource into an Any of the requested type URL: a
	// message of another type would reach sidecars as garbage.
	fullName := protoreflect.FullName(typeURL[slash+1:])

	set := &resourceSet{
		resources: make(map[string]types.ResourceWithTTL, len(resources)),
		plain:     make(map[string]types.Resource, len(resources)),
		versions:  make(map[string]string, len(resources)),
	}
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		if err := checkResource(fullName, name, resources[name]); err != nil {
			return nil, fmt.Errorf("resource %q: %w", name, err)
		}
		msg := proto.Clone(resources[name])
		version, err := resourceVersion(msg)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", name, err)
		}
		set.resources[name] = types.ResourceWithTTL{Resource: msg}
		set.plain[name] = msg
		set.versions[name] = version
	}
	set.version = typeVersion(set.versions)
	return set, nil
}

// checkResource refuses a resource that sidecars could not use under its name.
func checkResource(fullName protoreflect.FullName, name string, msg proto.Message) error {
	if name == "" {
		return errors.New("empty name")
	}
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return errors.New("nil message")
	}
	desc := msg.ProtoReflect().Descriptor()
	if desc.FullName() != fullName {
		return fmt.Errorf("message is %s, the type URL says %s", desc.FullName(), fullName)
	}
	// State-of-the-world responses carry bare messages: Envoy names a resource by
	// its name field, so that name must be the one it is served under.
	if field := desc.Fields().ByName("name"); field != nil && field.Kind() == protoreflect.StringKind && !field.IsList() {
		if got := msg.ProtoReflect().Get(field).String(); got != name {
			return fmt.Errorf("its name field is %q", got)
		}
	}
	return nil
}

// resourceVersion is the hash go-control-plane's cache itself puts on delta
// resources (cache.MarshalResource is the deterministic encoding), so that the
// versions we announce and the ones it sends agree.
func resourceVersion(msg proto.Message) (string, error) {
	data, err := cache.MarshalResource(msg)
	if err != nil {
		return "", fmt.Errorf("encoding: %w", err)
	}
	return cache.HashResource(data), nil
}

// typeVersion hashes the names and versions in name order, each length-prefixed so
// that no two different sets encode alike. An empty set has a version too: "nothing"
// is an answer once a type has been set.
func typeVersion(versions map[string]string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, name := range slices.Sorted(maps.Keys(versions)) {
		for _, s := range []string{name, versions[name]} {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// snapshot is every type set so far. It implements go-control-plane's
// cache.ResourceSnapshot for any type URL (its own Snapshot knows only the
// well-known xDS types). It is never changed: Set builds a new one.
type snapshot struct {
	sets map[string]*resourceSet
}

var _ cache.ResourceSnapshot = (*snapshot)(nil)

// with returns a snapshot that has set as typeURL's content.
func (s *snapshot) with(typeURL string, set *resourceSet) *snapshot {
	next := &snapshot{sets: maps.Clone(s.sets)}
	if next.sets == nil {
		next.sets = map[string]*resourceSet{}
	}
	next.sets[typeURL] = set
	return next
}

func (s *snapshot) set(typeURL string) (*resourceSet, bool) {
	set, ok := s.sets[typeURL]
	return set, ok
}

// GetVersion returns the type's version, "" for a type never set.
func (s *snapshot) GetVersion(typeURL string) string {
	if set, ok := s.set(typeURL); ok {
		return set.version
	}
	return ""
}

// GetResourcesAndTTL returns the type's resources (no TTL), nil for a type never set.
func (s *snapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if set, ok := s.set(typeURL); ok {
		return set.resources
	}
	return nil
}

// GetResources returns the type's resources, nil for a type never set.
func (s *snapshot) GetResources(typeURL string) map[string]types.Resource {
	if set, ok := s.set(typeURL); ok {
		return set.plain
	}
	return nil
}

// ConstructVersionMap has nothing to do: Set computed the versions.
func (s *snapshot) ConstructVersionMap() error { return nil }

// GetVersionMap returns the resources' versions, nil for a type never set.
func (s *snapshot) GetVersionMap(typeURL string) map[string]string {
	if set, ok := s.set(typeURL); ok {
		return set.versions
	}
	return nil
}
