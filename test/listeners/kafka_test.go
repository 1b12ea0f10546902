package listeners

import (
	"encoding/json"
	"maps"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"istio.io/api/annotation"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/bootstrap"

	kafkaplugin "aeraki.io/aeraki/plugin/kafka"
)

// contribEnv is the proxy environment variable that declares a contrib proxy build.
const contribEnv = bootstrap.IstioMetaPrefix + kafkaplugin.ContribMetadataKey

// contribBuild is p declaring a proxy build with Envoy's contrib filters (see
// TestKafkaOnlyOnContribProxies for how a workload does that).
func contribBuild(p Proxy) Proxy {
	p.Metadata = map[string]string{kafkaplugin.ContribMetadataKey: "true"}
	return p
}

// TestKafkaOnlyOnContribProxies: with kafka_broker enabled for a service, the
// sidecars that declare a contrib proxy build get it on the service's outbound
// listener and, for its workloads, on the inbound chains of its port; every other
// sidecar of the same mesh gets exactly the listeners istiod builds without our
// EnvoyFilters, tcp_proxy on the port, which a stock sidecar accepts.
//
// The contrib sidecars' node metadata is computed by Istio's own code from what a
// workload declares: the pod annotation proxy.istio.io/config with proxyMetadata, or
// the variable in the proxy image's environment.
func TestKafkaOnlyOnContribProxies(t *testing.T) {
	se := kafkaSE.kafkaContrib("true")
	kube := kafkaKube.kafkaContrib("true")
	services := []protocolCase{
		{
			name: "ServiceEntry", istio: se.serviceEntry(),
			client: client, server: se.seServer(),
			outbound: se.outbound(), inboundPort: 9092, filter: kafkaplugin.FilterName,
		},
		{
			name: "Kubernetes Service", kube: kube.kubeService(),
			client: client, server: kube.kubeServer(),
			outbound: kube.outbound(), inboundPort: 19092, filter: kafkaplugin.FilterName,
		},
	}
	declarations := []struct {
		name        string
		annotations map[string]string
		env         []string
	}{
		{"pod annotation", map[string]string{annotation.ProxyConfig.Name: `{"proxyMetadata": {"` + contribEnv + `": "true"}}`}, nil},
		{"proxy image environment", nil, []string{contribEnv + "=true"}},
	}
	for _, c := range services {
		t.Run(c.name, func(t *testing.T) {
			objs := KubeObjects(t, c.kube)
			m := New(t, c.istio, objs...)
			if len(m.EnvoyFilters) != 2 {
				t.Fatalf("generated %d EnvoyFilters, want outbound and inbound", len(m.EnvoyFilters))
			}
			for _, d := range declarations {
				t.Run(d.name, func(t *testing.T) {
					contribClient := declaring(t, m, c.client, d.annotations, d.env...)
					contribServer := declaring(t, m, c.server, d.annotations, d.env...)
					if got := contribClient.Metadata[kafkaplugin.ContribMetadataKey]; got != "true" {
						t.Fatalf("node metadata %s = %q, want \"true\"; metadata %v", kafkaplugin.ContribMetadataKey, got, contribClient.Metadata)
					}
					out, in := m.Listeners(contribClient), m.Listeners(contribServer)
					l := Find(out, c.outbound)
					if l == nil {
						t.Fatalf("client has no listener %s; listeners %v", c.outbound, Names(out))
					}
					checkChains(t, "contrib client's outbound "+c.outbound, l.GetFilterChains(), c.filter, false, nil)
					checkChains(t, "contrib server's inbound", InboundChains(in, c.inboundPort), c.filter, false, nil)
					m.CheckApplied(t, out, in)
				})
			}
			// Stock sidecars declare nothing.
			checkAsIstiodBuilds(t, c, m, &Mesh{Server: Istiod(t, c.istio, objs...)})
		})
	}
}

// declaring returns p with the node metadata its sidecar sends istiod when its pod
// carries annotations and its proxy container the environment env, as Istio's own
// code computes it: the injector's ProxyConfig for the pod (the mesh's defaults merged
// with proxy.istio.io/config), whose proxyMetadata the injection template writes into
// the proxy's environment and into PROXY_CONFIG; pilot-agent's node metadata from
// those (the ISTIO_META_ prefix stripped); istiod's parsing of that metadata.
func declaring(t *testing.T, m *Mesh, p Proxy, annotations map[string]string, env ...string) Proxy {
	t.Helper()
	istio := m.Server.Env()
	pc := istio.GetProxyConfigOrDefault(p.Namespace, p.Labels, annotations, istio.Mesh())
	env = append([]string(nil), env...)
	for k, v := range pc.GetProxyMetadata() {
		env = append(env, k+"="+v)
	}
	node, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{Envs: env, ProxyConfig: pc})
	if err != nil {
		t.Fatalf("pilot-agent's node metadata: %v", err)
	}
	// The untyped part of the metadata, where ISTIO_META_ variables land.
	raw, err := json.Marshal(node.RawMetadata)
	if err != nil {
		t.Fatal(err)
	}
	sent := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, sent); err != nil {
		t.Fatal(err)
	}
	meta, err := model.ParseMetadata(sent)
	if err != nil {
		t.Fatalf("istiod parsing node metadata: %v", err)
	}
	p.Metadata = maps.Clone(p.Metadata)
	if p.Metadata == nil {
		p.Metadata = map[string]string{}
	}
	for k, v := range meta.Raw {
		if s, ok := v.(string); ok {
			p.Metadata[k] = s
		}
	}
	return p
}
