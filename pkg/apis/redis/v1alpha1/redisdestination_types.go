package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// RedisDestination says how clients' sidecars connect to the servers of a Redis
// service: connection pool, TCP settings, server auth and cluster mode.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rd,categories=aeraki
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.trafficPolicy.connectionPool.redis.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RedisDestination struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec redisspec.RedisDestinationSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// RedisDestinationList is a list of RedisDestinations.
//
// +kubebuilder:object:root=true
type RedisDestinationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisDestination `json:"items"`
}
