package e2e

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/xds"
	"aeraki.io/aeraki/test/controlplane"
)

// testedIstiod is a row of the README's table of tested istiods.
type testedIstiod struct {
	binary, module, reports, features string
	// maxConnections says whether the istiod gets Redis maxConnections.
	maxConnections bool
}

// readCompatTable reads the table of tested istiods from the README: the rows whose
// first cell is a pilot-discovery binary.
func readCompatTable(t *testing.T) []testedIstiod {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []testedIstiod
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `pilot-discovery") {
			continue
		}
		var cells []string
		for c := range strings.SplitSeq(strings.Trim(line, "| "), "|") {
			cells = append(cells, strings.Trim(strings.TrimSpace(c), "`"))
		}
		if len(cells) != 6 {
			t.Fatalf("README: a row of the tested istiods has %d cells, want 6: %s", len(cells), line)
		}
		out = append(out, testedIstiod{binary: cells[0], module: cells[1], reports: cells[3], features: cells[4],
			maxConnections: cells[5] == "applied"})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompatTable: the README's table of tested istiods names exactly the istiods the
// compatibility test runs (controlplane.Pilots), each built from the Istio snapshot
// the table says, and what each reports is read as the table says.
func TestCompatTable(t *testing.T) {
	rows := readCompatTable(t)
	var binaries []string
	for _, r := range rows {
		binaries = append(binaries, r.binary)
	}
	if !slices.Equal(binaries, controlplane.Pilots) {
		t.Fatalf("README lists istiods %v, the compatibility test runs %v", binaries, controlplane.Pilots)
	}
	dir := os.Getenv(controlplane.EnvBinDir)
	if dir == "" {
		t.Fatalf("%s is not set (run `make testbin`, which prints the directory)", controlplane.EnvBinDir)
	}
	for _, r := range rows {
		info, err := buildinfo.ReadFile(filepath.Join(dir, r.binary))
		if err != nil {
			t.Fatalf("%s: %v (run `hack/testbin.sh %s`)", r.binary, err, r.binary)
		}
		var module string
		if info.Main.Path == "istio.io/istio" { // built as istio's own command
			module = info.Main.Version
		}
		for _, d := range info.Deps {
			if d.Path == "istio.io/istio" {
				module = d.Version
			}
		}
		if module != r.module {
			t.Errorf("%s is built from istio.io/istio %s; README says %s", r.binary, module, r.module)
		}
		if got := featuresOf(model.ParseIstioVersion(r.reports)); got != r.features {
			t.Errorf("%s reports %q, which is read as %s; README says %s", r.binary, r.reports, got, r.features)
		}
		if got := model.ParseIstioVersion(r.reports).AtLeast(model.Istio131); got != r.maxConnections {
			t.Errorf("%s: maxConnections applied %v; README says %v", r.binary, got, r.maxConnections)
		}
	}
}

func featuresOf(v model.IstioVersion) string {
	if !v.Known() {
		return "newest"
	}
	return v.String()
}

// TestCompat runs the loop against every istiod of the README's table: the version
// istiod reports is what the table says; a ServiceEntry and a Kubernetes Service in,
// their EnvoyFilters out, and a sidecar's listeners carrying our filters in place of
// tcp_proxy; Redis maxConnections applied (the sidecar's cluster has the cap) where
// the istiod reads MERGE_AND_REPLACE_LIST, and elsewhere reported IstiodTooOld with
// the service's earlier EnvoyFilters left as they were.
func TestCompat(t *testing.T) {
	for _, r := range readCompatTable(t) {
		t.Run(r.binary, func(t *testing.T) {
			e := startControlPlaneWith(t, controlplane.Options{Istiod: true, Pilot: r.binary})
			ctx := t.Context()
			opts := e.options()
			got, err := xds.ReadIstiod(ctx, xds.Options{Address: e.cp.IstiodAddr, Security: opts.IstiodSecurity,
				Namespace: rootNS, DomainSuffix: opts.DomainSuffix})
			if err != nil {
				t.Fatalf("reading istiod's version: %v", err)
			}
			if got.Reported != r.reports || featuresOf(got.Version) != r.features {
				t.Errorf("istiod reports %q, read as %s; README says %q, %s", got.Reported, featuresOf(got.Version), r.reports, r.features)
			}
			e.runController(t, "controller", e.cp.RestConfig, opts)

			d := dubboService{name: "dubbo-demo", host: "org.apache.dubbo.samples.basic.api.demoservice", vip: "240.240.0.10"}
			e.createDubbo(t, d)
			e.waitDubboFilters(t, d, true)
			e.waitListenerFilter(t, d.vip+"_20880", dubboFilter)

			c := e.redisClient(t)
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
				Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "cache"},
					Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
				},
			}
			if err := c.Create(ctx, svc); err != nil {
				t.Fatal(err)
			}
			connectTimeout := redisspec.Duration{Duration: 3 * time.Second}
			rd := &redisv1alpha1.RedisDestination{
				ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: appNS},
				Spec: redisspec.RedisDestinationSpec{Host: "cache", TrafficPolicy: &redisspec.TrafficPolicy{
					ConnectionPool: &redisspec.ConnectionPoolSettings{TCP: &redisspec.TCPSettings{ConnectTimeout: &connectTimeout}},
				}},
			}
			if err := c.Create(ctx, rd); err != nil {
				t.Fatal(err)
			}
			host := "cache." + appNS + ".svc.cluster.local"
			outbound := "aeraki-outbound-" + host + "-6379"
			e.waitEnvoyFilter(t, rootNS, outbound, true)
			before := e.waitEnvoyFilterYAML(t, outbound, redisFilter, "connectTimeout: 3s")
			e.waitListenerFilter(t, svc.Spec.ClusterIP+"_6379", redisFilter)
			waitReady(t, c, &redisv1alpha1.RedisDestination{}, "cache", metav1.ConditionTrue, redisspec.ReasonAccepted)

			orig := rd.DeepCopy()
			rd.Spec.TrafficPolicy.ConnectionPool.TCP.MaxConnections = ptr.To[int32](7)
			if err := c.Patch(ctx, rd, client.MergeFrom(orig)); err != nil {
				t.Fatal(err)
			}
			if r.maxConnections {
				e.waitEnvoyFilterYAML(t, outbound, "MERGE_AND_REPLACE_LIST", "maxConnections: 7")
				waitReady(t, c, &redisv1alpha1.RedisDestination{}, "cache", metav1.ConditionTrue, redisspec.ReasonAccepted)
				e.waitClusterMaxConnections(t, model.OutboundClusterName(6379, "", host), 7)
				return
			}
			got2 := &redisv1alpha1.RedisDestination{}
			waitReady(t, c, got2, "cache", metav1.ConditionFalse, redisspec.ReasonIstiodTooOld)
			msg := meta.FindStatusCondition(got2.Status.Conditions, redisv1alpha1.ConditionReady).Message
			if !strings.Contains(msg, "istiod 1.31 or later") || !strings.Contains(msg, `"`+r.reports+`"`) {
				t.Errorf("Ready message %q names neither the istiod needed nor the one connected", msg)
			}
			if after := e.envoyFilterYAML(t, rootNS, outbound); after != before {
				t.Errorf("the EnvoyFilter changed for an istiod that cannot read maxConnections' patch:\n%s", after)
			}
			e.waitListenerFilter(t, svc.Spec.ClusterIP+"_6379", redisFilter)
			// istiod still follows EnvoyFilters: one it cannot decode would break its
			// EnvoyFilter watch for the whole mesh (the list fails).
			d2 := dubboService{name: "dubbo-later", host: "org.apache.dubbo.samples.basic.api.laterservice", vip: "240.240.0.11"}
			e.createDubbo(t, d2)
			e.waitDubboFilters(t, d2, true)
			e.waitListenerFilter(t, d2.vip+"_20880", dubboFilter)
		})
	}
}

// waitClusterMaxConnections waits until a sidecar's cluster caps connections at n
// (the first threshold of the default priority, the one Envoy reads).
func (e *env) waitClusterMaxConnections(t *testing.T, name string, n uint32) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cs, err := e.cp.SidecarClusters(ctx, "10.1.0.1", appNS, map[string]string{"app": "redis-client"})
		if err != nil {
			t.Logf("sidecar clusters: %v", err)
			return false, nil
		}
		th := cs[name].GetCircuitBreakers().GetThresholds()
		last = fmt.Sprint(th)
		return len(th) > 0 && th[0].GetMaxConnections().GetValue() == n, nil
	})
	if err != nil {
		t.Fatalf("cluster %s never capped connections at %d; last thresholds: %s", name, n, last)
	}
}
