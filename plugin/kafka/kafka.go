// Package kafka generates Envoy's kafka_broker filter for `tcp-kafka` ports, for the
// sidecars that run a proxy build with Envoy's contrib filters.
//
// kafka_broker is a contrib extension, and Istio's stock sidecars have lacked it since
// Istio 1.13. A sidecar that is sent a listener naming a filter it lacks rejects the
// listener (NACK), which breaks the port for that sidecar. Two choices keep that from
// happening:
//
//   - Which services get the filter at all: New's contribByDefault (the controller
//     flag named by ContribFlag) enables it for every service, and the annotation
//     ContribAnnotation ("true" or "false") on a ServiceEntry or Kubernetes Service
//     overrides that for the service. A port left out is a SkipError that tells the
//     user why and how to opt in; the service's other ports still generate.
//   - Which sidecars get it: every patch carries the EnvoyFilter proxy match
//     `match.proxy.metadata: {AERAKI_CONTRIB_FILTERS: "true"}` (ContribMetadataKey),
//     so istiod applies it only to proxies whose node metadata declares the contrib
//     build. Every other sidecar keeps tcp_proxy on the port and accepts its listeners,
//     so enabling Kafka for a service needs contrib filters only in the sidecars that
//     are to decode it.
//
// # Declaring the contrib build
//
// A sidecar declares it with the environment variable
// ISTIO_META_AERAKI_CONTRIB_FILTERS=true. pilot-agent sends every ISTIO_META_<KEY>
// variable of its environment, and every ISTIO_META_<KEY> entry of its ProxyConfig's
// proxyMetadata, as node metadata <KEY> (GetNodeMetaData in istio's pkg/bootstrap,
// which strips the prefix), and istiod keeps every key of the node metadata as a
// string for EnvoyFilter proxy matches (NodeMetadata.Raw; proxyMatch in
// pilot/pkg/model/envoyfilter.go compares each key's value exactly). The injector
// merges the pod annotation
//
//	proxy.istio.io/config: '{"proxyMetadata": {"ISTIO_META_AERAKI_CONTRIB_FILTERS": "true"}}'
//
// into the workload's ProxyConfig and writes its proxyMetadata into the istio-proxy
// container's environment, so that annotation on a pod template (with a contrib proxy
// image, say through sidecar.istio.io/proxyImage) is the per-workload way. A contrib
// proxy image can set the variable itself, and the mesh's defaultConfig.proxyMetadata
// sets it for every sidecar. The value must be exactly "true", and only proxies that
// have the filter may declare it: a stock sidecar that does gets the filter and
// rejects the listener.
//
// The filter decodes the Kafka protocol for statistics and is inserted in front of the
// tcp_proxy Istio put on the listener, which still forwards the bytes.
//
// # Type of the patch value
//
// The patch carries the KafkaBroker message as an ordinary typed_config. istiod turns
// patch values into Envoy messages with the proto registry linked into pilot-discovery
// (pkg/config/xds BuildXDSObjectFromStruct), and that registry holds kafka_broker: its
// generated import list pkg/config/xds/filter_types.gen.go imports every v3 package of
// go-control-plane/contrib, kafka_broker/v3 among them. A xds.type.v3.TypedStruct
// wrapper, which istiod would pass through without reading, is therefore not needed,
// and without it both istiod's validating webhook and our own check (strict JSON, then
// ValidateAll on the unpacked message) see the real KafkaBroker.
//
// # Statistics
//
// Envoy roots the filter's statistics at `kafka.<stat_prefix>.` (request.<type>,
// response.<type>, response.<type>_duration), and its Prometheus endpoint turns every
// character outside [a-zA-Z0-9_] into `_` and adds `envoy_`. The stat prefix is
//
//	<direction>_<port>_<host>
//
// with the host lowercased, `*` spelled `wildcard` and every other character outside
// [a-z0-9] (dots above all) turned into `_`: Istio's cluster name
// `outbound|9092||kafka.default.svc.cluster.local` in a form without dots or `|`. The
// port is the listener's: the service port outbound, the target port inbound. Every VIP
// of a service shares the prefix. A Prometheus name then reads, for example,
//
//	envoy_kafka_outbound_9092_kafka_default_svc_cluster_local_request_produce_request
//
// Istio keeps protocol filter statistics out of a sidecar's stats by default; the
// inclusion prefix `kafka.` (`proxyStatsMatcher.inclusionPrefixes`) lets them in.
package kafka

import (
	"fmt"

	kafka "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/kafka_broker/v3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/patch"
)

const (
	// FilterName is Envoy's name of the Kafka broker network filter.
	FilterName = "envoy.filters.network.kafka_broker"
	// ContribAnnotation on a ServiceEntry or Kubernetes Service turns the filter on
	// ("true") or off ("false") for the service, whatever the controller's default.
	ContribAnnotation = "kafka.aeraki.io/contrib-filter"
	// ContribFlag is the name of the controller flag that sets New's contribByDefault.
	// The message of a skipped port names it.
	ContribFlag = "kafka-contrib-filter"
	// ContribMetadataKey is the node metadata by which a sidecar declares that its
	// proxy build has Envoy's contrib filters (value "true"): the filter's patches
	// match only such proxies. A sidecar sets it as the environment variable
	// ISTIO_META_AERAKI_CONTRIB_FILTERS.
	ContribMetadataKey = "AERAKI_CONTRIB_FILTERS"
)

// New returns the Kafka generator. contribByDefault gives every Kafka port kafka_broker
// unless its service's ContribAnnotation says "false"; either way only the sidecars
// that declare ContribMetadataKey get it.
func New(contribByDefault bool) generator.Generator {
	return generator.Func(func(ctx *generator.Context, svc *model.Service, port *model.Port) ([]*model.EnvoyFilter, error) {
		if err := enabled(contribByDefault, svc.Annotations); err != nil {
			return nil, err
		}
		return patch.ListenerFilters(ctx, svc, port, patch.InsertBeforeTCPProxy, func(l *patch.Listener) (*patch.Filter, error) {
			// stat_prefix is the only required field (ValidateAll: at least one
			// character). Response rewriting and API key lists stay off: the filter
			// only observes.
			return patch.NetworkFilter(FilterName, &kafka.KafkaBroker{StatPrefix: l.StatName}), nil
		}, patch.ForProxiesWithMetadata(map[string]string{ContribMetadataKey: "true"}))
	})
}

// enabled returns nil when the service gets the filter, a SkipError when it is left as
// plain TCP, and an error naming the annotation when its value is neither "true" nor
// "false".
func enabled(byDefault bool, annotations map[string]string) error {
	value, set := annotations[ContribAnnotation]
	switch {
	case set && value == "true":
		return nil
	case set && value == "false":
		how := `set it to "true"`
		if byDefault {
			how = `remove it or set it to "true"`
		}
		return &generator.SkipError{Reason: fmt.Sprintf(
			`left as plain TCP because the annotation %s is "false"; %s to give Envoy's kafka_broker filter to the sidecars that declare a contrib proxy build (ISTIO_META_%s=true)`,
			ContribAnnotation, how, ContribMetadataKey)}
	case set:
		return fmt.Errorf(`annotation %s must be "true" or "false", not %q`, ContribAnnotation, value)
	case byDefault:
		return nil
	default:
		return &generator.SkipError{Reason: fmt.Sprintf(
			`Envoy's kafka_broker filter is a contrib extension that Istio's stock sidecars lack. `+
				`Annotate the ServiceEntry or Service with %s: "true", or start the controller with --%s=true for every service, `+
				`to give it to the sidecars that declare a proxy build with contrib filters (environment ISTIO_META_%s=true); other sidecars keep plain TCP`,
			ContribAnnotation, ContribFlag, ContribMetadataKey)}
	}
}
