package controlplane

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const rateLimitFilter = RateLimitFilterName

func testListener(name string, chains [][]string, defaultChain ...string) *listener.Listener {
	filters := func(names []string) []*listener.Filter {
		var out []*listener.Filter
		for _, n := range names {
			out = append(out, &listener.Filter{Name: n})
		}
		return out
	}
	l := &listener.Listener{Name: name}
	for _, c := range chains {
		l.FilterChains = append(l.FilterChains, &listener.FilterChain{Filters: filters(c)})
	}
	if len(defaultChain) > 0 {
		l.DefaultFilterChain = &listener.FilterChain{Filters: filters(defaultChain)}
	}
	return l
}

func testResponse(t *testing.T, typeURL, version, nonce string, resources ...proto.Message) *discovery.DiscoveryResponse {
	t.Helper()
	resp := &discovery.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce}
	for i, r := range resources {
		a, err := anypb.New(r)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 { // istiod may wrap resources; both forms decode
			if a, err = anypb.New(&discovery.Resource{Resource: a}); err != nil {
				t.Fatal(err)
			}
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

// TestSidecarNACKsLikeEnvoy drives the sidecar's response handling directly: what it
// applies, keeps and says in its ACKs and NACKs.
func TestSidecarNACKsLikeEnvoy(t *testing.T) {
	s := newSidecar(nil, SidecarOptions{RejectFilters: []string{"envoy.filters.network.kafka_broker"}, RejectClusters: []string{"bad"}})
	tcp := []string{"envoy.filters.network.tcp_proxy"}
	kafka := []string{"envoy.filters.network.kafka_broker", "envoy.filters.network.tcp_proxy"}

	ack := s.handle(testResponse(t, listenerTypeURL, "v1", "n1",
		testListener("a", [][]string{tcp}), testListener("b", [][]string{tcp}), testListener("gone", [][]string{tcp})))
	if ack.GetErrorDetail() != nil || ack.GetVersionInfo() != "v1" || ack.GetResponseNonce() != "n1" {
		t.Fatalf("ACK of v1: %v", ack)
	}
	v1b := s.Listeners()["b"]

	// b gains kafka_broker in its default chain, c is new with it in a second chain, a
	// changes, gone is gone.
	a2 := testListener("a", [][]string{tcp, tcp})
	nack := s.handle(testResponse(t, listenerTypeURL, "v2", "n2",
		a2, testListener("b", [][]string{tcp}, kafka...), testListener("c", [][]string{tcp, kafka})))
	want := "Error adding/updating listener(s) b: Didn't find a registered implementation for name: 'envoy.filters.network.kafka_broker'\n" +
		"c: Didn't find a registered implementation for name: 'envoy.filters.network.kafka_broker'\n"
	if got := nack.GetErrorDetail().GetMessage(); got != want {
		t.Errorf("NACK message:\n%q\nwant\n%q", got, want)
	}
	if nack.GetErrorDetail().GetCode() != int32(codes.Internal) || nack.GetVersionInfo() != "v1" || nack.GetResponseNonce() != "n2" {
		t.Errorf("NACK of v2: %v, want code INTERNAL, version v1, nonce n2", nack)
	}
	st := s.State()
	if st.LDS.Accepted || st.LDS.ErrorDetail != want || st.LastError != want || st.LDS.VersionInfo != "v1" || st.LDS.Responses != 2 {
		t.Errorf("LDS after NACK: %+v, last error %q", st.LDS, st.LastError)
	}
	names := slices.Sorted(maps.Keys(st.Listeners))
	if !slices.Equal(names, []string{"a", "b"}) || !proto.Equal(st.Listeners["a"], a2) || st.Listeners["b"] != v1b {
		t.Errorf("listeners after a partly rejected update: %v (a updated, b kept, c absent, gone removed)", names)
	}

	if ack := s.handle(testResponse(t, listenerTypeURL, "v3", "n3", testListener("a", [][]string{tcp}))); ack.GetErrorDetail() != nil || ack.GetVersionInfo() != "v3" {
		t.Errorf("ACK of v3: %v", ack)
	}
	if st := s.State(); !st.LDS.Accepted || st.LDS.ErrorDetail != "" || st.LastError != want {
		t.Errorf("after ACK: LDS %+v, last error %q (kept)", st.LDS, st.LastError)
	}

	dup := s.handle(testResponse(t, listenerTypeURL, "v4", "n4", testListener("a", nil), testListener("a", nil)))
	if got := dup.GetErrorDetail().GetMessage(); got != "Error adding/updating listener(s) a: duplicate listener a found\n" {
		t.Errorf("duplicate listener NACK: %q", got)
	}

	cds := s.handle(testResponse(t, clusterTypeURL, "c1", "m1", &cluster.Cluster{Name: "ok"}, &cluster.Cluster{Name: "bad"}, &cluster.Cluster{Name: "bad"}))
	wantCDS := "Error adding/updating cluster(s) bad: cluster refused by this test sidecar (SidecarOptions.RejectClusters), bad: duplicate cluster bad found"
	if got := cds.GetErrorDetail().GetMessage(); got != wantCDS || cds.GetVersionInfo() != "" {
		t.Errorf("CDS NACK: %q version %q, want %q and no version", got, cds.GetVersionInfo(), wantCDS)
	}
	if cs := s.State().Clusters; len(cs) != 1 || cs["ok"] == nil {
		t.Errorf("clusters after a partly rejected update: %v", cs)
	}
	if s.handle(&discovery.DiscoveryResponse{TypeUrl: resourceTypeURL}) != nil {
		t.Error("answered a type it never asked for")
	}
}

// TestSidecarRejectsFilter runs sidecars against a real istiod: one whose proxy build
// lacks local_ratelimit NACKs the listener an EnvoyFilter puts it on, and istiod's syncz
// says so, while one that has the filter takes it.
func TestSidecarRejectsFilter(t *testing.T) {
	ctx := t.Context()
	cp := StartForTest(t, Options{WorkDir: t.TempDir(), Istiod: true})
	istio, err := istioclient.NewForConfig(cp.RestConfig)
	if err != nil {
		t.Fatal(err)
	}
	const vip = "240.240.0.20"
	const name = vip + "_9000"
	createServiceEntry(t, istio, "limited", vip)
	hasListener := func(ls map[string]*listener.Listener) bool { return ls[name] != nil }

	start := func(ip string, opts SidecarOptions) *Sidecar {
		t.Helper()
		opts.IP, opts.Namespace, opts.Labels = ip, "default", map[string]string{"app": "test"}
		s, err := cp.StartSidecar(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		if _, err := s.WaitAccepted(ctx, hasListener); err != nil {
			t.Fatal(err)
		}
		return s
	}
	lacking := start("10.20.0.7", SidecarOptions{RejectFilters: []string{rateLimitFilter}, Metadata: map[string]string{"ISTIO_VERSION": "1.30.0"}})
	having := start("10.20.0.8", SidecarOptions{})
	before := lacking.State()

	wantNACK := "Error adding/updating listener(s) " + name +
		": Didn't find a registered implementation for name: '" + rateLimitFilter + "'\n"
	listenerStatus := func(cc *statusv3.ClientConfig) *statusv3.ClientConfig_GenericXdsConfig {
		for _, x := range cc.GetGenericXdsConfigs() {
			if x.GetTypeUrl() == listenerTypeURL {
				return x
			}
		}
		return nil
	}

	t.Run("NACK", func(t *testing.T) {
		createRateLimitFilter(t, istio, name)
		if _, err := having.WaitAccepted(ctx, func(ls map[string]*listener.Listener) bool {
			return ls[name] != nil && slices.Contains(FilterNames(ls[name]), rateLimitFilter)
		}); err != nil {
			t.Fatal(err)
		}
		st, err := lacking.Wait(ctx, func(st SidecarState) bool { return st.LDS.Responses > before.LDS.Responses })
		if err != nil {
			t.Fatal(err)
		}
		if st.LDS.Accepted || st.LDS.ErrorDetail != wantNACK || st.LastError != wantNACK {
			t.Fatalf("lacking sidecar's LDS: %+v, last error %q; want a NACK %q", st.LDS, st.LastError, wantNACK)
		}
		if st.LDS.VersionInfo != before.LDS.VersionInfo || st.LDS.Nonce == before.LDS.Nonce {
			t.Errorf("NACK carries version %q nonce %q; want the last accepted version %q and a new nonce", st.LDS.VersionInfo, st.LDS.Nonce, before.LDS.VersionInfo)
		}
		if !proto.Equal(st.Listeners[name], before.Listeners[name]) || len(st.Listeners) != len(before.Listeners) {
			t.Errorf("lacking sidecar did not keep its listener: %v", FilterNames(st.Listeners[name]))
		}
		if !st.CDS.Accepted {
			t.Errorf("lacking sidecar rejected CDS: %+v", st.CDS)
		}

		configs := waitSyncStatus(t, cp, func(cs map[string]*statusv3.ClientConfig) error {
			bad, good := listenerStatus(cs[lacking.ProxyID()]), listenerStatus(cs[having.ProxyID()])
			if bad.GetConfigStatus() != statusv3.ConfigStatus_ERROR || bad.GetErrorState().GetDetails() != wantNACK {
				return fmt.Errorf("lacking sidecar's LDS: %v", bad)
			}
			if good.GetConfigStatus() != statusv3.ConfigStatus_SYNCED || good.GetErrorState() != nil {
				return fmt.Errorf("having sidecar's LDS: %v", good)
			}
			return nil
		})
		t.Logf("syncz of the lacking sidecar: %v", configs[lacking.ProxyID()])
		// The options' metadata replaced SidecarNode's version.
		if v := configs[lacking.ProxyID()].GetNode().GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue(); v != "1.30.0" {
			t.Errorf("lacking sidecar's ISTIO_VERSION in syncz: %q, want the one of its options", v)
		}
		for _, x := range configs[lacking.ProxyID()].GetGenericXdsConfigs() {
			if x.GetTypeUrl() == clusterTypeURL && x.GetConfigStatus() != statusv3.ConfigStatus_SYNCED {
				t.Errorf("lacking sidecar's CDS in syncz: %v", x)
			}
		}
	})

	t.Run("accepts again once the filter is gone", func(t *testing.T) {
		if err := istio.NetworkingV1alpha3().EnvoyFilters(IstioNamespace).Delete(ctx, "ratelimit", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ls, err := lacking.WaitAccepted(ctx, hasListener)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(FilterNames(ls[name]), rateLimitFilter) {
			t.Errorf("listener still has %s: %v", rateLimitFilter, FilterNames(ls[name]))
		}
		if st := lacking.State(); st.LDS.ErrorDetail != "" || st.LastError != wantNACK {
			t.Errorf("after the ACK: LDS %+v, last error %q", st.LDS, st.LastError)
		}
		waitSyncStatus(t, cp, func(cs map[string]*statusv3.ClientConfig) error {
			for _, s := range []*Sidecar{lacking, having} {
				if x := listenerStatus(cs[s.ProxyID()]); x.GetConfigStatus() != statusv3.ConfigStatus_SYNCED || x.GetErrorState() != nil {
					return fmt.Errorf("%s LDS: %v", s.ProxyID(), x)
				}
			}
			return nil
		})
	})

	t.Run("CDS NACK", func(t *testing.T) {
		const clusterName = "outbound|9000||limited.example.com"
		s := start("10.20.0.9", SidecarOptions{RejectClusters: []string{clusterName}})
		st := s.State()
		want := "Error adding/updating cluster(s) " + clusterName + ": cluster refused by this test sidecar (SidecarOptions.RejectClusters)"
		if st.CDS.Accepted || st.CDS.ErrorDetail != want || st.Clusters[clusterName] != nil || len(st.Clusters) == 0 {
			t.Fatalf("CDS %+v with %d clusters; want a NACK %q and the other clusters", st.CDS, len(st.Clusters), want)
		}
		waitSyncStatus(t, cp, func(cs map[string]*statusv3.ClientConfig) error {
			for _, x := range cs[s.ProxyID()].GetGenericXdsConfigs() {
				if x.GetTypeUrl() == clusterTypeURL && x.GetConfigStatus() == statusv3.ConfigStatus_ERROR && x.GetErrorState().GetDetails() == want {
					return nil
				}
			}
			return fmt.Errorf("CDS of %s: %v", s.ProxyID(), cs[s.ProxyID()])
		})
	})

	t.Run("istiod restart", func(t *testing.T) {
		connects := having.State().Connects
		if err := cp.StopIstiod(); err != nil {
			t.Fatal(err)
		}
		if _, err := having.Wait(ctx, func(st SidecarState) bool { return st.Err != nil }); err != nil {
			t.Fatal(err)
		}
		if err := cp.StartIstiod(ctx); err != nil {
			t.Fatal(err)
		}
		responses := having.LDS().Responses
		if _, err := having.Wait(ctx, func(st SidecarState) bool {
			return st.Connects > connects && st.LDS.Responses > responses && st.LDS.Accepted
		}); err != nil {
			t.Fatal(err)
		}
		waitSyncStatus(t, cp, func(cs map[string]*statusv3.ClientConfig) error {
			if x := listenerStatus(cs[having.ProxyID()]); x.GetConfigStatus() != statusv3.ConfigStatus_SYNCED {
				return fmt.Errorf("LDS of %s after the restart: %v", having.ProxyID(), x)
			}
			return nil
		})
	})
}

// createRateLimitFilter puts local_ratelimit before tcp_proxy on the outbound listener.
func createRateLimitFilter(t *testing.T, istio istioclient.Interface, listenerName string) {
	t.Helper()
	ef, err := RateLimitFilter("ratelimit", listenerName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := istio.NetworkingV1alpha3().EnvoyFilters(IstioNamespace).Create(t.Context(), ef, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create EnvoyFilter: %v", err)
	}
}

// waitSyncStatus polls istiod's syncz until check passes on its ClientConfigs by node
// id, and returns them.
func waitSyncStatus(t *testing.T, cp *ControlPlane, check func(map[string]*statusv3.ClientConfig) error) map[string]*statusv3.ClientConfig {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		configs, err := cp.SyncStatus(ctx)
		cancel()
		last = err
		if err == nil {
			byID := map[string]*statusv3.ClientConfig{}
			var ids []string
			for _, cc := range configs {
				byID[cc.GetNode().GetId()] = cc
				ids = append(ids, cc.GetNode().GetId())
			}
			if last = check(byID); last == nil {
				return byID
			}
			last = fmt.Errorf("%w (proxies: %s)", last, strings.Join(ids, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("syncz: %v", last)
	return nil
}
