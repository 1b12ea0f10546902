package feedback

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/model"
)

const root = "istio-system"

var protocols = map[string]model.Protocol{
	"envoy.filters.network.kafka_broker": model.Kafka,
	"envoy.filters.network.dubbo_proxy":  model.Dubbo,
	"envoy.filters.network.redis_proxy":  model.Redis,
}

// listenerPatch puts filter (of config type typ) on a listener, by name or by port.
func listenerPatch(name string, port uint32, filter, typ string) *networking.EnvoyFilter_EnvoyConfigObjectPatch {
	value, _ := structpb.NewStruct(map[string]any{
		"name":        filter,
		"typedConfig": map[string]any{"@type": "type.googleapis.com/" + typ},
	})
	return &networking.EnvoyFilter_EnvoyConfigObjectPatch{
		ApplyTo: networking.EnvoyFilter_NETWORK_FILTER,
		Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{ObjectTypes: &networking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{
			Listener: &networking.EnvoyFilter_ListenerMatch{Name: name, PortNumber: port},
		}},
		Patch: &networking.EnvoyFilter_Patch{Operation: networking.EnvoyFilter_Patch_REPLACE, Value: value},
	}
}

func clusterPatch(name string) *networking.EnvoyFilter_EnvoyConfigObjectPatch {
	value, _ := structpb.NewStruct(map[string]any{"connectTimeout": "1s"})
	return &networking.EnvoyFilter_EnvoyConfigObjectPatch{
		ApplyTo: networking.EnvoyFilter_CLUSTER,
		Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{ObjectTypes: &networking.EnvoyFilter_EnvoyConfigObjectMatch_Cluster{
			Cluster: &networking.EnvoyFilter_ClusterMatch{Name: name},
		}},
		Patch: &networking.EnvoyFilter_Patch{Operation: networking.EnvoyFilter_Patch_MERGE, Value: value},
	}
}

func filter(ns, name string, annotations map[string]string, patches ...*networking.EnvoyFilter_EnvoyConfigObjectPatch) *model.EnvoyFilter {
	return &model.EnvoyFilter{Name: name, Namespace: ns, Annotations: annotations, Spec: &networking.EnvoyFilter{ConfigPatches: patches}}
}

func service(key string) map[string]string { return map[string]string{model.ServiceAnnotation: key} }

// mesh: a Kafka service (outbound in the root namespace, inbound in its own), a
// Dubbo port shared by every service on it, a Redis service with cluster settings,
// and a Dubbo service only namespace team sees.
func mesh() map[string]*model.EnvoyFilter {
	efs := []*model.EnvoyFilter{
		filter(root, "aeraki-outbound-broker.kafka.svc.cluster.local-9092", service("kafka/broker"),
			listenerPatch("240.0.0.1_9092", 0, "envoy.filters.network.kafka_broker", "envoy.extensions.filters.network.kafka_broker.v3.KafkaBroker")),
		filter("kafka", "aeraki-inbound-broker.kafka.svc.cluster.local-9092", service("kafka/broker"),
			listenerPatch("virtualInbound", 0, "envoy.filters.network.kafka_broker", "envoy.extensions.filters.network.kafka_broker.v3.KafkaBroker")),
		filter(root, "aeraki-shared-dubbo-20880", map[string]string{model.SharedPortAnnotation: "dubbo/20880"},
			listenerPatch("", 20880, "envoy.filters.network.dubbo_proxy", "envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy")),
		filter(root, "aeraki-outbound-cache.shop.svc.cluster.local-6379", service("shop/cache"),
			listenerPatch("240.0.0.3_6379", 0, "envoy.filters.network.redis_proxy", "envoy.extensions.filters.network.redis_proxy.v3.RedisProxy"),
			clusterPatch("outbound|6379||cache.shop.svc.cluster.local")),
		filter("team", "aeraki-outbound-private.team.svc.cluster.local-20881", service("team/private"),
			listenerPatch("240.0.0.4_20881", 0, "envoy.filters.network.dubbo_proxy", "envoy.extensions.filters.network.dubbo_proxy.v3.DubboProxy")),
	}
	out := map[string]*model.EnvoyFilter{}
	for _, ef := range efs {
		out[ef.Key()] = ef
	}
	return out
}

func TestAttribute(t *testing.T) {
	sent := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	proxy := func(id, ns, listeners, clusters string) *model.ProxyStatus {
		return &model.ProxyStatus{ID: id, Namespace: ns, Listeners: listeners, Clusters: clusters, ListenersSent: sent, ClustersSent: sent}
	}
	noKafka := "Error adding/updating listener(s) 240.0.0.1_9092: Didn't find a registered implementation for name: 'envoy.filters.network.kafka_broker'"
	sync := &model.ProxySync{
		Proxies: 9, InSync: 2,
		Rejecting: []*model.ProxyStatus{
			// Outbound and inbound Kafka, two lines.
			proxy("a.kafka", "kafka",
				noKafka+"\nError adding/updating listener(s) virtualInbound: Didn't find a registered implementation for name: 'envoy.filters.network.kafka_broker'\n", ""),
			proxy("b.apps", "apps", noKafka, ""),
			// The shared port's filter, on some listener of its port; the config type names it.
			proxy("c.apps", "apps",
				"Error adding/updating listener(s) 10.96.0.7_20880: Proto constraint validation failed (DubboProxyValidationError.StatPrefix: value length must be at least 1 runes)", ""),
			// A cluster we patch.
			proxy("d.apps", "apps", "",
				"Error adding/updating cluster(s) outbound|6379||cache.shop.svc.cluster.local: cluster: unknown field 'x'"),
			// A listener we patch, rejected for a filter that is not ours: not ours.
			proxy("e.apps", "apps",
				"Error adding/updating listener(s) 240.0.0.1_9092: Didn't find a registered implementation for name: 'envoy.filters.network.lua'", ""),
			// A private service's filter reaches only its namespace: a proxy elsewhere
			// rejecting the same listener name does not blame it.
			proxy("f.apps", "apps",
				"Error adding/updating listener(s) 240.0.0.4_20881: Didn't find a registered implementation for name: 'envoy.filters.network.dubbo_proxy'", ""),
			// Somebody else's listener.
			proxy("g.apps", "apps",
				"Error adding/updating listener(s) 0.0.0.0_8080: Didn't find a registered implementation for name: 'envoy.filters.http.wasm'", ""),
		},
		Dropped: 0,
	}
	r := Attribute(sync, NewIndex(mesh(), root, protocols))
	got := map[string]string{}
	for owner, rej := range r.Rejections {
		got[owner.String()] = fmtRejection(rej)
	}
	want := map[string]string{
		"service kafka/broker": "2 proxies [istio-system/aeraki-outbound-broker.kafka.svc.cluster.local-9092 kafka/aeraki-inbound-broker.kafka.svc.cluster.local-9092] [kafka] e.g. a.kafka: " + noKafka,
		"port dubbo/20880":     "1 proxies [istio-system/aeraki-shared-dubbo-20880] [dubbo] e.g. c.apps: Error adding/updating listener(s) 10.96.0.7_20880: Proto constraint validation failed (DubboProxyValidationError.StatPrefix: value length must be at least 1 runes)",
		"service shop/cache":   "1 proxies [istio-system/aeraki-outbound-cache.shop.svc.cluster.local-6379] [redis] e.g. d.apps: Error adding/updating cluster(s) outbound|6379||cache.shop.svc.cluster.local: cluster: unknown field 'x'",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rejections (-want +got):\n%s", diff)
	}
	if r.Unattributed != 3 || r.UnattributedExample.ID != "e.apps" {
		t.Errorf("unattributed: %d, example %v; want 3, the first not ours", r.Unattributed, r.UnattributedExample)
	}
	if want := map[model.Protocol]int{model.Kafka: 2, model.Dubbo: 1, model.Redis: 1}; !cmp.Equal(r.ByProtocol, want) {
		t.Errorf("by protocol %v, want %v", r.ByProtocol, want)
	}
	if r.Proxies != 9 || r.InSync != 2 || r.Rejecting != 7 {
		t.Errorf("counts: %d proxies, %d in sync, %d rejecting", r.Proxies, r.InSync, r.Rejecting)
	}
	if rej := r.Rejections[Owner{OwnerService, "kafka/broker"}]; !rej.Sent.Equal(sent) {
		t.Errorf("sent %v, want %v", rej.Sent, sent)
	}
}

func fmtRejection(r *Rejection) string {
	return fmt.Sprintf("%d proxies %v %v e.g. %s: %s", r.Proxies, r.Filters, r.Protocols, r.Example, r.Detail)
}
