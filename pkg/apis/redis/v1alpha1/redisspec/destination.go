package redisspec

// RedisDestinationSpec is the desired connection handling for a Redis service.
type RedisDestinationSpec struct {
	// Host of the service, completed like RedisService's.
	// +kubebuilder:validation:MinLength=1
	Host string `json:"host"`
	// TrafficPolicy for connections to the service.
	// +optional
	TrafficPolicy *TrafficPolicy `json:"trafficPolicy,omitempty"`

	// Unreadable says why the spec as stored could not be read (see Unreadable);
	// never stored.
	Unreadable string `json:"-"`
}

// TrafficPolicy holds the connection settings.
type TrafficPolicy struct {
	// ConnectionPool settings.
	// +optional
	ConnectionPool *ConnectionPoolSettings `json:"connectionPool,omitempty"`
}

// ConnectionPoolSettings are TCP and Redis connection settings.
type ConnectionPoolSettings struct {
	// TCP settings, as Istio's DestinationRule has them.
	// +optional
	TCP *TCPSettings `json:"tcp,omitempty"`
	// Redis settings.
	// +optional
	Redis *RedisConnectionSettings `json:"redis,omitempty"`
}

// TCPSettings are the TCP connection settings, with Istio's names and meaning.
type TCPSettings struct {
	// MaxConnections caps connections to the service from one sidecar; 0 leaves
	// Istio's default, as in Istio's DestinationRule.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxConnections *int32 `json:"maxConnections,omitempty"`
	// ConnectTimeout for new connections.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	ConnectTimeout *Duration `json:"connectTimeout,omitempty"`
	// TCPKeepalive turns on TCP keepalive probes on the connections.
	// +optional
	TCPKeepalive *TCPKeepalive `json:"tcpKeepalive,omitempty"`
}

// TCPKeepalive configures keepalive probes; unset fields keep the OS defaults.
type TCPKeepalive struct {
	// Probes sent without reply before the connection is dropped; 0 keeps the OS
	// default.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Probes *int32 `json:"probes,omitempty"`
	// Time idle before the first probe.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Time *Duration `json:"time,omitempty"`
	// Interval between probes.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	Interval *Duration `json:"interval,omitempty"`
}

// RedisMode says how the servers are reached.
// +kubebuilder:validation:Enum=PROXY;CLUSTER
type RedisMode string

// Modes.
const (
	// ModeProxy spreads commands over the service's endpoints by key hash.
	ModeProxy RedisMode = "PROXY"
	// ModeCluster talks the Redis Cluster protocol: the proxy learns the slot map
	// from the discovery endpoints and sends each command to the right shard.
	ModeCluster RedisMode = "CLUSTER"
)

// RedisConnectionSettings are the Redis side of the connections.
type RedisConnectionSettings struct {
	// Mode is PROXY (default) or CLUSTER.
	// +optional
	Mode RedisMode `json:"mode,omitempty"`
	// Auth the sidecar sends to the servers.
	// +optional
	Auth *Auth `json:"auth,omitempty"`
	// DiscoveryEndpoints are host:port seeds a CLUSTER mode proxy asks for the slot
	// map; the service's own host and port when empty.
	// +optional
	DiscoveryEndpoints []string `json:"discoveryEndpoints,omitempty"`
}
