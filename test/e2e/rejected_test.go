package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	networking "istio.io/api/networking/v1alpha3"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"aeraki.io/aeraki/pkg/push"
	"aeraki.io/aeraki/plugin/kafka"
	"aeraki.io/aeraki/test/controlplane"
)

// The Kafka service of the rejection tests: its filter goes to the sidecars that
// declare the contrib build.
const (
	brokerVIP      = "240.240.0.40"
	brokerListener = brokerVIP + "_9092"
	brokerOutbound = "aeraki-outbound-broker.dubbo.example-9092"
	plainVIP       = "240.240.0.41"
	plainListener  = plainVIP + "_9000"
)

// rejectionArgs run the binary with a fast look at the proxies.
func rejectionArgs(extra ...string) []string {
	return append(fastArgs(), append([]string{"--proxy-status-interval=300ms"}, extra...)...)
}

func (e *env) createBroker(t *testing.T) {
	t.Helper()
	se := &clientnetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: appNS,
		Annotations: map[string]string{kafka.ContribAnnotation: "true"}}}
	se.Spec.Hosts = []string{"broker.dubbo.example"}
	se.Spec.Addresses = []string{brokerVIP}
	se.Spec.Ports = []*networking.ServicePort{{Number: 9092, Name: "tcp-kafka", Protocol: "TCP"}}
	se.Spec.Resolution = networking.ServiceEntry_STATIC
	se.Spec.Location = networking.ServiceEntry_MESH_INTERNAL
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// contribSidecar declares the contrib build; lacking says it lacks kafka_broker all
// the same (a build that declares what it does not have), so it rejects it.
func (e *env) contribSidecar(t *testing.T, ip string, lacking bool) *controlplane.Sidecar {
	t.Helper()
	opts := controlplane.SidecarOptions{IP: ip, Namespace: appNS, Labels: map[string]string{"app": "client"},
		Metadata: map[string]string{kafka.ContribMetadataKey: "true"}}
	if lacking {
		opts.RejectFilters = []string{kafka.FilterName}
	}
	return e.sidecar(t, opts)
}

func (e *env) sidecar(t *testing.T, opts controlplane.SidecarOptions) *controlplane.Sidecar {
	t.Helper()
	s, err := e.cp.StartSidecar(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitRejectedEvent waits for the RejectedByProxies Warning Event on the
// ServiceEntry and returns its note.
func (e *env) waitRejectedEvent(t *testing.T, name string) string {
	t.Helper()
	var note string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		evs, err := e.kube.EventsV1().Events(appNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Name == name && ev.Reason == push.ReasonRejectedByProxies && ev.Type == "Warning" {
				note = ev.Note
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on %s: %v", push.ReasonRejectedByProxies, name, err)
	}
	return note
}

// rejectedEvents counts the RejectedByProxies Events on an object.
func (e *env) rejectedEvents(t *testing.T, name string) int {
	t.Helper()
	evs, err := e.kube.EventsV1().Events(appNS).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs.Items {
		if ev.Regarding.Name == name && ev.Reason == push.ReasonRejectedByProxies {
			n++
		}
	}
	return n
}

// waitMetrics waits until every sample line wanted is in the controller's metrics.
func waitMetrics(t *testing.T, a *controlplane.Aeraki, want ...string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		text, err := a.Metrics(ctx)
		if err != nil {
			return false, err
		}
		last = text
		lines := strings.Split(text, "\n")
		for _, w := range want {
			if !slices.Contains(lines, w) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var got []string
		for _, l := range strings.Split(last, "\n") {
			if strings.HasPrefix(l, "aeraki_proxies") || strings.HasPrefix(l, "aeraki_contained") {
				got = append(got, l)
			}
		}
		t.Fatalf("metrics never showed %q; last: %q", want, got)
	}
}

// runStatus runs `aeraki status` against the controller and returns its output and
// exit code.
func runStatus(t *testing.T, bin string, a *controlplane.Aeraki) (string, int) {
	t.Helper()
	args, err := a.StatusArgs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, append([]string{"status"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("aeraki status: %v: %s", err, out)
	return "", 0
}

// carries reports whether a listener carries a filter.
func carries(ls map[string]*listener.Listener, name, filter string) bool {
	l, ok := ls[name]
	return ok && slices.Contains(controlplane.FilterNames(l), filter)
}

// TestRejectedKafkaContained: a sidecar that declares the contrib build but lacks
// Kafka's filter rejects the broker's listener. The controller names the broker
// (Event, gauge), and, as its filters were never accepted by every proxy, leaves
// them out: the port falls back to plain TCP, which the sidecar accepts. A sidecar
// that has the filter stays in sync throughout; a rejection of somebody else's
// EnvoyFilter is counted apart and blamed on no service.
func TestRejectedKafkaContained(t *testing.T) {
	ctx := t.Context()
	built := controlplane.BuildAerakiForTest(t)
	e := startStockControlPlane(t)
	bin := built()
	a, err := e.cp.StartAeraki(ctx, bin, rejectionArgs()...)
	a = stopAtEnd(t, a, err)

	// Somebody else's filter, on a plain TCP service, that one sidecar lacks.
	plain := &clientnetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: appNS}}
	plain.Spec.Hosts = []string{"plain.dubbo.example"}
	plain.Spec.Addresses = []string{plainVIP}
	plain.Spec.Ports = []*networking.ServicePort{{Number: 9000, Name: "tcp", Protocol: "TCP"}}
	plain.Spec.Resolution = networking.ServiceEntry_STATIC
	if _, err := e.istio.NetworkingV1().ServiceEntries(appNS).Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	userFilter, err := controlplane.RateLimitFilter("ratelimit", plainListener)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.istio.NetworkingV1alpha3().EnvoyFilters(rootNS).Create(ctx, userFilter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sidecar(t, controlplane.SidecarOptions{IP: "10.1.0.13", Namespace: appNS, Labels: map[string]string{"app": "other"},
		RejectFilters: []string{controlplane.RateLimitFilterName}})

	having := e.contribSidecar(t, "10.1.0.12", false)
	lacking := e.contribSidecar(t, "10.1.0.11", true)
	e.createBroker(t)
	if _, err := having.WaitAccepted(ctx, func(ls map[string]*listener.Listener) bool { return carries(ls, brokerListener, kafka.FilterName) }); err != nil {
		t.Fatalf("the sidecar with Kafka's filter never got it: %v", err)
	}
	st, err := lacking.Wait(ctx, func(st controlplane.SidecarState) bool { return strings.Contains(st.LastError, kafka.FilterName) })
	if err != nil {
		t.Fatalf("the sidecar without Kafka's filter never rejected it: %v", err)
	}
	t.Logf("rejected: %s", st.LastError)

	note := e.waitRejectedEvent(t, "broker")
	t.Logf("Event: %s", note)
	for _, want := range []string{lacking.ProxyID(), brokerListener, kafka.FilterName} {
		if !strings.Contains(note, want) {
			t.Errorf("the Event does not name %s: %s", want, note)
		}
	}
	// Contained: never accepted by every proxy, the broker's client filter is left
	// out, and the sidecar accepts plain TCP for it.
	e.waitEnvoyFilter(t, rootNS, brokerOutbound, false)
	if _, err := lacking.WaitAccepted(ctx, func(ls map[string]*listener.Listener) bool {
		return carries(ls, brokerListener, tcpFilter) && !carries(ls, brokerListener, kafka.FilterName)
	}); err != nil {
		t.Fatalf("the rejecting sidecar never accepted its listeners again: %v", err)
	}
	waitMetrics(t, a,
		`aeraki_proxies_rejecting{protocol="kafka"} 0`,
		`aeraki_proxies_rejecting{protocol=""} 1`,
		`aeraki_proxy_rejections_total{protocol="kafka"} 1`,
		`aeraki_contained 1`,
		`aeraki_proxies{state="in_sync"} 2`,
	)
	if s := having.State(); s.LastError != "" || !s.LDS.Accepted {
		t.Errorf("the sidecar with Kafka's filter was disturbed: last error %q, LDS accepted %v", s.LastError, s.LDS.Accepted)
	}
	out, code := runStatus(t, bin, a)
	if code != 0 || !regexp.MustCompile(`ServiceEntry dubbo/broker +0 +0 +left out`).MatchString(out) ||
		!strings.Contains(out, "1 reject only what is not aeraki's") {
		t.Errorf("aeraki status after containment exited %d, want 0, the broker left out, one proxy rejecting what is not ours:\n%s", code, out)
	}
	if n := e.rejectedEvents(t, "plain"); n != 0 {
		t.Errorf("%d %s Events on the plain service, whose rejection is somebody else's filter", n, push.ReasonRejectedByProxies)
	}

	// It stays contained: the rejected filters are not written again while the
	// broker's config is unchanged.
	time.Sleep(2 * time.Second)
	if _, err := e.istio.NetworkingV1alpha3().EnvoyFilters(rootNS).Get(ctx, brokerOutbound, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the rejected EnvoyFilter was written again: %v", err)
	}
	if err := a.Running(); err != nil {
		t.Fatal(err)
	}
}

// TestRejectedNotContained: with containment off, the rejection is reported and the
// EnvoyFilter stays as generated.
func TestRejectedNotContained(t *testing.T) {
	ctx := t.Context()
	built := controlplane.BuildAerakiForTest(t)
	e := startStockControlPlane(t)
	bin := built()
	a, err := e.cp.StartAeraki(ctx, bin, rejectionArgs("--contain-rejections=false")...)
	a = stopAtEnd(t, a, err)
	lacking := e.contribSidecar(t, "10.1.0.21", true)
	e.createBroker(t)
	if _, err := lacking.Wait(ctx, func(st controlplane.SidecarState) bool { return strings.Contains(st.LastError, kafka.FilterName) }); err != nil {
		t.Fatalf("the sidecar without Kafka's filter never rejected it: %v", err)
	}
	note := e.waitRejectedEvent(t, "broker")
	if !strings.Contains(note, "they stay as they are") {
		t.Errorf("the Event does not say the filters stay: %s", note)
	}
	waitMetrics(t, a, `aeraki_proxies_rejecting{protocol="kafka"} 1`, `aeraki_contained 0`)
	// `aeraki status` names the broker, the proxy and Envoy's error, and fails.
	out, code := runStatus(t, bin, a)
	if code != 1 || !regexp.MustCompile(`ServiceEntry dubbo/broker +1 +1 +`+regexp.QuoteMeta(lacking.ProxyID()+": Error adding/updating listener(s) "+brokerListener+
		": Didn't find a registered implementation for name: '"+kafka.FilterName+"'")).MatchString(out) {
		t.Errorf("aeraki status exited %d, want 1 (a proxy rejects), naming the broker, its EnvoyFilter and the rejecting proxy:\n%s", code, out)
	}
	time.Sleep(2 * time.Second)
	ef, err := e.istio.NetworkingV1alpha3().EnvoyFilters(rootNS).Get(ctx, brokerOutbound, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the EnvoyFilter proxies reject is gone with containment off: %v", err)
	}
	if !strings.Contains(fmt.Sprint(ef.Spec.GetConfigPatches()), kafka.FilterName) {
		t.Errorf("the EnvoyFilter changed with containment off: %v", ef.Spec.GetConfigPatches())
	}
	if s := lacking.State(); s.LDS.Accepted {
		t.Errorf("the sidecar accepts its listeners again with containment off")
	}
}
