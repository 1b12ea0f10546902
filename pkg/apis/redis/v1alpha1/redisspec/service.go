package redisspec

// RedisServiceSpec is the desired Redis handling of a service.
type RedisServiceSpec struct {
	// Host lists the hosts of the services this applies to: fully qualified, or
	// short names completed with the object's namespace as Istio does.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:items:MinLength=1
	Host []string `json:"host"`
	// Settings of the connections to the Redis servers.
	// +optional
	Settings *RedisSettings `json:"settings,omitempty"`
	// Redis routes commands by key prefix, longest prefix first. A route without a
	// match replaces the catch-all, which otherwise sends every other key to the
	// service itself.
	// +optional
	Redis []RedisRoute `json:"redis,omitempty"`
	// Faults injected into commands, for testing clients' resilience.
	// +optional
	Faults []Fault `json:"faults,omitempty"`

	// Unreadable says why the spec as stored could not be read (see Unreadable);
	// never stored.
	Unreadable string `json:"-"`
}

// ReadPolicy says which servers of a Redis cluster serve read commands.
// +kubebuilder:validation:Enum=MASTER;PREFER_MASTER;REPLICA;PREFER_REPLICA;ANY
type ReadPolicy string

// Read policies.
const (
	ReadPolicyMaster        ReadPolicy = "MASTER"
	ReadPolicyPreferMaster  ReadPolicy = "PREFER_MASTER"
	ReadPolicyReplica       ReadPolicy = "REPLICA"
	ReadPolicyPreferReplica ReadPolicy = "PREFER_REPLICA"
	ReadPolicyAny           ReadPolicy = "ANY"
)

// RedisSettings are the proxy's connection pool settings.
type RedisSettings struct {
	// OpTimeout bounds each command; 5s when unset.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	OpTimeout *Duration `json:"opTimeout,omitempty"`
	// CaseInsensitive makes key-prefix routes ignore case.
	// +optional
	CaseInsensitive bool `json:"caseInsensitive,omitempty"`
	// EnableCommandStats adds per-command statistics.
	// +optional
	EnableCommandStats bool `json:"enableCommandStats,omitempty"`
	// MaxBufferSizeBeforeFlush batches commands to a server until this many bytes
	// are buffered (or bufferFlushTimeout passes); 0 sends each at once.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxBufferSizeBeforeFlush *int64 `json:"maxBufferSizeBeforeFlush,omitempty"`
	// BufferFlushTimeout flushes a batch this long after its first command; 3ms
	// when unset.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	BufferFlushTimeout *Duration `json:"bufferFlushTimeout,omitempty"`
	// MaxUpstreamUnknownConnections caps connections to servers learnt from
	// redirections (cluster mode); 100 when unset.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	MaxUpstreamUnknownConnections *int64 `json:"maxUpstreamUnknownConnections,omitempty"`
	// EnableHashtagging hashes only the {...} part of a key, so related keys land
	// on the same server.
	// +optional
	EnableHashtagging bool `json:"enableHashtagging,omitempty"`
	// EnableRedirection follows MOVED and ASK redirections of a Redis cluster.
	// +optional
	EnableRedirection bool `json:"enableRedirection,omitempty"`
	// ReadPolicy for read commands in cluster mode; MASTER when unset.
	// +optional
	ReadPolicy ReadPolicy `json:"readPolicy,omitempty"`
	// Auth is the password (and username) clients must send with AUTH to the
	// sidecar. It does not authenticate to the servers: that is RedisDestination's.
	// +optional
	Auth *Auth `json:"auth,omitempty"`
}

// RedisRoute sends the commands whose key matches to a destination.
type RedisRoute struct {
	// Match selects commands by key; a route without one is the catch-all.
	// +optional
	Match *RouteMatch `json:"match,omitempty"`
	// Route is where matching commands go.
	Route RouteDestination `json:"route"`
	// Mirror copies matching commands to other destinations too; their replies are
	// ignored.
	// +optional
	Mirror []Mirror `json:"mirror,omitempty"`
}

// RouteMatch selects commands.
type RouteMatch struct {
	// Key matches the command's key.
	Key KeyMatch `json:"key"`
}

// KeyMatch matches a key by prefix.
type KeyMatch struct {
	// Prefix the key starts with.
	// +kubebuilder:validation:MinLength=1
	Prefix string `json:"prefix"`
	// RemovePrefix strips the prefix from the key before the command is sent.
	// +optional
	RemovePrefix bool `json:"removePrefix,omitempty"`
}

// RouteDestination is a Redis service, by host and port.
type RouteDestination struct {
	// Host of a service with a tcp-redis port, completed like spec.host.
	// +kubebuilder:validation:MinLength=1
	Host string `json:"host"`
	// Port of the host; may be left out (or 0) when the host has a single tcp-redis
	// port.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// Mirror copies commands to another destination.
type Mirror struct {
	// Route is the destination of the copies.
	Route RouteDestination `json:"route"`
	// Percentage of commands copied; all when unset.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
	// ExcludeReadCommands copies only commands that write.
	// +optional
	ExcludeReadCommands bool `json:"excludeReadCommands,omitempty"`
}

// FaultType is the kind of a fault.
// +kubebuilder:validation:Enum=DELAY;ERROR
type FaultType string

// Fault types.
const (
	FaultDelay FaultType = "DELAY"
	FaultError FaultType = "ERROR"
)

// Fault delays commands or fails them with an error.
type Fault struct {
	// Type of the fault; DELAY when unset, as in Aeraki's API.
	// +optional
	// +kubebuilder:default=DELAY
	Type FaultType `json:"type,omitempty"`
	// Percentage of commands affected; all when unset.
	// +optional
	Percentage *Percent `json:"percentage,omitempty"`
	// Delay added to each affected command (none when unset); DELAY faults only.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Delay *Duration `json:"delay,omitempty"`
	// Commands affected, such as GET; every command when empty.
	// +optional
	Commands []string `json:"commands,omitempty"`
}
