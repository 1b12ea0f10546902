// Package zookeeper generates Envoy's zookeeper_proxy filter for `tcp-zookeeper` ports.
//
// The filter decodes the ZooKeeper client protocol and emits per-opcode statistics;
// it does not route. It is inserted in front of the tcp_proxy Istio already put on
// the listener, which still forwards the bytes, so a decoding problem costs metrics,
// never traffic. Istio 1.24-1.31 sidecars carry the filter (it is alpha in Envoy).
//
// # Statistics
//
// Envoy roots the filter's statistics at `<stat_prefix>.zookeeper.` (its config.cc
// scopes them with fmt::format("{}.zookeeper", stat_prefix); Envoy's docs up to 1.15
// said `zookeeper.<stat_prefix>.`), and its Prometheus endpoint turns every character
// outside [a-zA-Z0-9_] into `_` and adds `envoy_`. The stat prefix is therefore
//
//	zookeeper_<direction>_<port>_<host>
//
// with the host lowercased, `*` spelled `wildcard` and every other character outside
// [a-z0-9] (dots above all) turned into `_`: Istio's cluster name
// `outbound|2181||zk.default.svc.cluster.local` in a form without dots or `|`. The
// port is the listener's: the service port outbound, the target port inbound. Every
// VIP of a service shares the prefix, so its counters add up per service and
// direction. The Prometheus name of a statistic reads, for example,
//
//	envoy_zookeeper_outbound_2181_zk_default_svc_cluster_local_zookeeper_getdata_rq
//
// The leading `zookeeper_` makes every ZooKeeper statistic of a sidecar start the same
// way, as Kafka's (`kafka.`), Redis' and Dubbo's do by Envoy's own naming, so that one
// entry opens them all in Istio's stats inclusion list, which by default keeps
// protocol filter statistics out: `proxyStatsMatcher.inclusionPrefixes: [zookeeper_]`
// in the proxy config, or the pod annotation
// `sidecar.istio.io/statsInclusionPrefixes: zookeeper_`.
package zookeeper

import (
	zookeeper "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/zookeeper_proxy/v3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

// FilterName is Envoy's name of the ZooKeeper network filter.
const FilterName = "envoy.filters.network.zookeeper_proxy"

// New returns the ZooKeeper generator.
func New() generator.Generator {
	return generator.Func(generate)
}

func generate(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
	return patch.ListenerFilters(ctx, svc, port, patch.InsertBeforeTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
		// Only stat_prefix is required (ValidateAll: at least one character). The
		// optional latency-threshold and per-opcode byte metrics multiply the number
		// of statistics per service; they stay off, as Envoy defaults them.
		return patch.NetworkFilter(FilterName, &zookeeper.ZooKeeperProxy{
			StatPrefix: "zookeeper_" + l.StatName,
		}), nil
	})
}
