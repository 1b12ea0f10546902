// Package v1alpha1 holds the redis.aeraki.io/v1alpha1 API: RedisService (how clients'
// sidecars route Redis commands of a service) and RedisDestination (how they connect
// to its servers). VirtualService and DestinationRule cannot express key-prefix
// routes, mirrors, faults, Redis auth or cluster mode; these two can.
//
// +kubebuilder:object:generate=true
// +groupName=redis.aeraki.io
package v1alpha1
