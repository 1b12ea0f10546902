package model

// ObjectRef names a user's object, for its status and for messages.
type ObjectRef struct {
	Kind, Namespace, Name string
}

// String is "<kind> <namespace>/<name>".
func (r ObjectRef) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// Verdict is what a translation concludes about an object that configures services
// (a RedisService, a RedisDestination): what its Ready condition says.
type Verdict struct {
	Ready bool
	// Reason is one of the API's Reason constants.
	Reason  string
	Message string
	// Generation is the object's metadata.generation the verdict was made from: a
	// verdict about an older generation says nothing about the current object.
	Generation int64
}

// Kinds of the objects a translation gives a verdict.
const (
	KindRedisService     = "RedisService"
	KindRedisDestination = "RedisDestination"
)
