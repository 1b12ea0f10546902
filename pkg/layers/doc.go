// Package layers holds the rule that keeps the translation pure, as a test: the
// generator, patch-building, plugin, translate and plan packages (and the model they
// share) never depend on controller-runtime, client-go, Prometheus, gRPC, Helm or
// Kubernetes' object types, not even through another package. They are then tested
// and benchmarked without a cluster, and a reader knows that nothing in them talks to
// the apiserver or istiod. Package model/kubeobj turns Kubernetes objects into the
// model's views of them; the Redis specs live in apis/redis/v1alpha1/redisspec.
//
// The stages, each importing only the ones before it:
//
//	model -> generator -> patch -> plugin/<protocol> -> translate -> plan
//	      -> metrics, apply (the only writer) -> push (debounced loop) -> bootstrap
//	xds (the istiod watcher), kube (manager, Redis reconcilers) and model/kubeobj
//	feed bootstrap.
package layers
