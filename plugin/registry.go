// Package plugin lists the generator of every protocol, in one place.
package plugin

import (
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/plugin/dubbo"
	"aeraki.io/aeraki/plugin/kafka"
	"aeraki.io/aeraki/plugin/redis"
	"aeraki.io/aeraki/plugin/thrift"
	"aeraki.io/aeraki/plugin/zookeeper"
)

// Options are the operator's settings that change what generators may emit.
type Options struct {
	// KafkaContribFilter gives every tcp-kafka port kafka_broker (overridable per
	// service), for the sidecars that declare a proxy build with Envoy's contrib
	// filters (see plugin/kafka).
	KafkaContribFilter bool
}

// Registry returns the generators by protocol. Ports of a protocol without one are
// left to Istio as plain TCP.
func Registry(opts Options) generator.Registry {
	return generator.Registry{
		model.Dubbo:     dubbo.New(),
		model.Thrift:    thrift.New(),
		model.ZooKeeper: zookeeper.New(),
		model.Kafka:     kafka.New(opts.KafkaContribFilter),
		model.Redis:     redis.New(),
	}
}

// FilterProtocols maps the network filter each generator puts on listeners to its
// protocol: what a proxy's rejection of a filter is counted under.
func FilterProtocols() map[string]model.Protocol {
	return map[string]model.Protocol{
		dubbo.FilterName:     model.Dubbo,
		thrift.FilterName:    model.Thrift,
		zookeeper.FilterName: model.ZooKeeper,
		kafka.FilterName:     model.Kafka,
		redis.FilterName:     model.Redis,
	}
}

// RouteTypes are the xDS types of the route configurations the generators' shared
// ports name (see generator.Sharer), which the route server serves.
func RouteTypes() []string {
	return []string{dubbo.RoutesTypeURL}
}
