package patch

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/model"
)

// The EnvoyFilters of shared ports (see generator.Sharer). Their names cannot be
// those of a service's filters, which all start aeraki-outbound- or aeraki-inbound-.
const (
	// RouteDiscoveryObject is the EnvoyFilter that adds the route server's cluster to
	// every sidecar.
	RouteDiscoveryObject = "aeraki-route-discovery"
	// RouteCluster names the route server's cluster in every sidecar.
	RouteCluster       = "aeraki-routes"
	sharedObjectPrefix = "aeraki-shared-"
)

// Istio's names, in every sidecar, for the SDS cluster of its agent and the secrets
// it serves there: the workload certificate and the mesh root.
const (
	sdsCluster     = "sds-grpc"
	workloadSecret = "default"
	rootSecret     = "ROOTCA"
)

// SharedObjectName is the name of the EnvoyFilter shared by every client listener of
// a protocol's port, and of the route configuration it names.
func SharedObjectName(p model.Protocol, port uint32) string {
	return sharedObjectPrefix + string(p) + "-" + strconv.FormatUint(uint64(port), 10)
}

// SharedListenerFilter returns the EnvoyFilter that puts filter in tcp_proxy's place
// on every client listener of port, in the root namespace: one patch, matched by port
// rather than by listener name, with a value that is the same for every listener.
func SharedListenerFilter(ctx *generator.Context, p model.Protocol, port uint32, filter *Filter) (*model.EnvoyFilter, error) {
	value, err := FilterValue(filter)
	if err != nil {
		return nil, fmt.Errorf("shared filter for port %d: %w", port, err)
	}
	return &model.EnvoyFilter{
		Name:        SharedObjectName(p, port),
		Namespace:   ctx.RootNamespace,
		Labels:      model.ManagedLabels(),
		Annotations: map[string]string{model.SharedPortAnnotation: model.SharedPortKey(p, port)},
		Spec: &networking.EnvoyFilter{ConfigPatches: []*networking.EnvoyFilter_EnvoyConfigObjectPatch{{
			ApplyTo: networking.EnvoyFilter_NETWORK_FILTER,
			Match: &networking.EnvoyFilter_EnvoyConfigObjectMatch{
				Context: networking.EnvoyFilter_SIDECAR_OUTBOUND,
				ObjectTypes: &networking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: &networking.EnvoyFilter_ListenerMatch{
					PortNumber: port,
					FilterChain: &networking.EnvoyFilter_ListenerMatch_FilterChainMatch{
						Filter: &networking.EnvoyFilter_ListenerMatch_FilterMatch{Name: TCPProxyFilter},
					},
				}},
			},
			Patch: &networking.EnvoyFilter_Patch{Operation: networking.EnvoyFilter_Patch_REPLACE, Value: value},
		}}},
	}, nil
}

// RouteSource is the config source of the routes a shared filter names: the route
// server, over the ADS method on the sidecars' cluster for it (Envoy's Dubbo and
// Thrift route discovery take only the aggregated API type).
func RouteSource(rd *generator.RouteDiscovery) *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion: core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
			ApiType:             core.ApiConfigSource_AGGREGATED_GRPC,
			TransportApiVersion: core.ApiVersion_V3,
			GrpcServices:        []*core.GrpcService{grpcCluster(rd.Cluster)},
		}},
	}
}

func grpcCluster(name string) *core.GrpcService {
	return &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: name}}}
}

// routeServerConnectTimeout bounds a sidecar's connection attempt to the route
// server; routeServerDNSRefresh is how often a sidecar resolves its host.
const (
	routeServerConnectTimeout = 5 * time.Second
	routeServerDNSRefresh     = time.Minute
)

// RouteDiscoveryFilter returns the EnvoyFilter that adds the route server's cluster to
// every sidecar: HTTP/2 (gRPC) to the server's Service, over mutual TLS with the
// sidecar's own workload certificate, the server verified against the mesh root and
// its SPIFFE identities, both from istio-agent's SDS as for Istio's own mTLS. The
// cluster is added rather than taken from Istio's view of the Service, so that a
// Sidecar resource that hides the Service does not hide the routes.
func RouteDiscoveryFilter(ctx *generator.Context) (*model.EnvoyFilter, error) {
	rd := ctx.RouteDiscovery
	if rd == nil || rd.Cluster == "" || rd.Host == "" || rd.Port == 0 || len(rd.Identities) == 0 {
		return nil, errors.New("route discovery needs a cluster name, the server's host, port and identities")
	}
	sans := make([]*tlsv3.SubjectAltNameMatcher, 0, len(rd.Identities))
	for _, id := range rd.Identities {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: id}},
		})
	}
	sds := func(name string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &core.ConfigSource{
			ResourceApiVersion: core.ApiVersion_V3,
			ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
				ApiType:             core.ApiConfigSource_GRPC,
				TransportApiVersion: core.ApiVersion_V3,
				GrpcServices:        []*core.GrpcService{grpcCluster(sdsCluster)},
			}},
		}}
	}
	tlsContext, err := anypb.New(&tlsv3.UpstreamTlsContext{
		Sni: rd.Host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(workloadSecret)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: sds(rootSecret),
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	http2, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &core.Http2ProtocolOptions{},
		}},
	}})
	if err != nil {
		return nil, err
	}
	c := &cluster.Cluster{
		Name:                 rd.Cluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		// Every sidecar resolves the Service's name: once a minute rather than Envoy's
		// 5 s keeps that at a query a minute per sidecar. A ClusterIP rarely changes,
		// and a sidecar keeps its routes while it cannot reach the server. The field's
		// replacement (the envoy.clusters.dns extension) is newer than the proxies
		// this must run on; istiod sets this field on its own DNS clusters too.
		DnsRefreshRate:  durationpb.New(routeServerDNSRefresh), //nolint:staticcheck // see above
		DnsLookupFamily: cluster.Cluster_V4_PREFERRED,
		ConnectTimeout:  durationpb.New(routeServerConnectTimeout),
		LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: rd.Cluster, Endpoints: []*endpoint.LocalityLbEndpoints{{
			LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
					Address: rd.Host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: rd.Port},
				}}},
			}}}},
		}}},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2},
		TransportSocket: &core.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: tlsContext},
		},
	}
	p, err := ClusterPatch(networking.EnvoyFilter_SIDECAR_OUTBOUND, nil, networking.EnvoyFilter_Patch_ADD, c)
	if err != nil {
		return nil, err
	}
	return &model.EnvoyFilter{
		Name:      RouteDiscoveryObject,
		Namespace: ctx.RootNamespace,
		Labels:    model.ManagedLabels(),
		Spec:      &networking.EnvoyFilter{ConfigPatches: []*networking.EnvoyFilter_EnvoyConfigObjectPatch{p}},
	}, nil
}
