package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the API group and version of the Redis resources.
var GroupVersion = schema.GroupVersion{Group: "redis.aeraki.io", Version: "v1alpha1"}

// SchemeBuilder registers the types of this package.
var SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

// AddToScheme adds the types of this package to a scheme.
var AddToScheme = SchemeBuilder.AddToScheme

func init() { //nolint:gochecknoinits // the scheme registration every Kubernetes API package does
	SchemeBuilder.Register(&RedisService{}, &RedisServiceList{}, &RedisDestination{}, &RedisDestinationList{})
}
