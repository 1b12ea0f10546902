// Package layers holds the rule that keeps the translation pure, as a test: the
// generator, patch-building, plugin, translate and plan packages (and the model they
// share) never depend on controller-runtime, client-go, Prometheus or gRPC, not even
// through another package. They are then tested and benchmarked without a cluster,
// and a reader knows that nothing in them talks to the apiserver or istiod.
//
// The stages, each importing only the ones before it:
//
//	model -> generator -> patch -> plugin/<protocol> -> translate -> plan
//	      -> metrics, apply (the only writer) -> push (debounced loop) -> bootstrap
//	xds (the istiod watcher) and kube (manager, Redis reconcilers) feed bootstrap.
package layers
