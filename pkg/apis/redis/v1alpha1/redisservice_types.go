package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// RedisService says how clients' sidecars handle the Redis commands sent to a
// service: key-prefix routes, mirrors, faults, connection settings and the password
// clients must give. Without one, a tcp-redis port still gets Redis-aware proxying
// with every key routed to the service itself.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rsvc,categories=aeraki
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RedisService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec redisspec.RedisServiceSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// RedisServiceList is a list of RedisServices.
//
// +kubebuilder:object:root=true
type RedisServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisService `json:"items"`
}
