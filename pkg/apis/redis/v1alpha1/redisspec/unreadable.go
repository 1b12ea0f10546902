package redisspec

import "encoding/json"

// A stored object whose spec cannot be read (written in another form of this API,
// or under another schema: say Aeraki's, before our CRDs replaced its) is kept
// with its hosts, where those can be read, and the reason in Unreadable. The
// translation reports it (ReasonUnreadable) and the services it names keep the
// EnvoyFilters applied before, until the object is written again; the other objects
// of its kind are read as usual.

// UnreadableServiceSpec is the spec of a RedisService whose stored spec raw could
// not be read, for the reason err.
func UnreadableServiceSpec(raw []byte, err error) RedisServiceSpec {
	spec := RedisServiceSpec{Unreadable: err.Error()}
	var hosts struct {
		Host []string `json:"host"`
	}
	if json.Unmarshal(raw, &hosts) == nil {
		spec.Host = hosts.Host
	}
	return spec
}

// UnreadableDestinationSpec is the spec of a RedisDestination whose stored spec raw
// could not be read, for the reason err.
func UnreadableDestinationSpec(raw []byte, err error) RedisDestinationSpec {
	spec := RedisDestinationSpec{Unreadable: err.Error()}
	var host struct {
		Host string `json:"host"`
	}
	if json.Unmarshal(raw, &host) == nil {
		spec.Host = host.Host
	}
	return spec
}

// UnreadableOf says why spec (a *RedisServiceSpec or *RedisDestinationSpec) could not
// be read as stored; empty when it was, or for anything else.
func UnreadableOf(spec any) string {
	switch s := spec.(type) {
	case *RedisServiceSpec:
		return s.Unreadable
	case *RedisDestinationSpec:
		return s.Unreadable
	}
	return ""
}

// UnreadableMessage is what an unreadable object is told, for the reason why.
func UnreadableMessage(why string) string {
	return "the object as stored cannot be read: " + why + "; write it again in this API's form (kubectl get -o yaml shows what is stored)"
}
