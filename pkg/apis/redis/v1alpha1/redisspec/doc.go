// Package redisspec holds the specs of the redis.aeraki.io/v1alpha1 resources and the
// reasons of their Ready condition: the part of the API that generators read. It
// depends on nothing of Kubernetes, so that translation stays free of client
// libraries; package v1alpha1 wraps these specs into the Kubernetes objects.
//
// +kubebuilder:object:generate=true
package redisspec
