package scale

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// envEdits overrides the number of edits TestEditLatency makes.
	envEdits = "AERAKI_EDITS"
	// What `go test ./...` runs; `make edit-latency` sets 1,000 services and 50 edits.
	defaultEditServices = 100
	defaultEdits        = 10
)

// editResult is what TestEditLatency measured; it is logged as a table and as one
// JSON line.
type editResult struct {
	Services int `json:"services"`
	Edits    int `json:"edits"`
	// Controller is the controller's debounce settings and writers, as flags.
	Controller []string `json:"controller_flags"`
	// ToEnvoyFilter runs from the apiserver accepting the VirtualService's update (the
	// update call's return) to the test's informer seeing the EnvoyFilter with the new
	// weights; ToSidecar to the sidecar receiving the listener with them.
	ToEnvoyFilter   latencyStats   `json:"update_to_envoyfilter_seconds"`
	ToSidecar       latencyStats   `json:"update_to_sidecar_listener_seconds"`
	APIServerWrites map[string]int `json:"apiserver_envoyfilter_writes"`
	RunSeconds      float64        `json:"test_run_seconds"`
}

// latencyStats are the nearest-rank p50 and p99 and the max of some latencies.
type latencyStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(ds []time.Duration) latencyStats {
	return latencyStats{P50: percentile(ds, 50).Seconds(), P99: percentile(ds, 99).Seconds(), Max: slices.Max(ds).Seconds()}
}

func (l latencyStats) String() string {
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)).Round(time.Millisecond) }
	return fmt.Sprintf("p50 %s, p99 %s, max %s", d(l.P50), d(l.P99), d(l.Max))
}

// TestEditLatency measures the steady state's cost of one change: N services
// converged (the harness's Dubbo services, every EnvoyFilter written, the sidecar
// holding every service listener with dubbo_proxy, istiod idle), then, one at a time,
// an edit of one VirtualService's weights, until both the EnvoyFilter and the
// sidecar's listener carry the new weights. It asserts that every edit arrives with
// the right weights and costs exactly one EnvoyFilter update; times are reported.
func TestEditLatency(t *testing.T) {
	n := serviceCount(t, defaultEditServices)
	edits := envInt(t, envEdits, defaultEdits, 1<<20)
	begin := time.Now()
	h := startHarness(t, n, true)
	obs := observe(t, h.istio)
	createRouting(t, h.istio, n)
	createServiceEntries(t, h.istio, n)
	waitVisible(t, h.ae, obs, n)
	h.sc.waitListeners(t, n, n)
	waitIstiodIdle(t, h.cp, h.sc.limit, "before the edits")

	before := efWriteCount(t, h.cp)
	weights := map[int]int{} // service -> the weight of v1 after the edits
	var toFilter, toSidecar []time.Duration
	for k := range edits {
		i := k % n
		w := nextWeight(cmp.Or(weights[i], initialWeight))
		weights[i] = w
		updatesBefore, _ := obs.changes()
		accepted := editWeights(t, h.istio, i, w)
		filterAt, sidecarAt := waitEdit(t, h, obs, i, w)
		toFilter, toSidecar = append(toFilter, filterAt.Sub(accepted)), append(toSidecar, sidecarAt.Sub(accepted))
		if updates, _ := obs.changes(); updates != updatesBefore+1 {
			t.Errorf("edit %d (%s to %d/%d): %d EnvoyFilter updates seen, want 1", k, name(i), w, 100-w, updates-updatesBefore)
		}
	}

	want := map[string]int{"PUT": edits}
	writes := checkIdlePush(t, h.cp, h.ae, h.istio, h.kube, before, want)
	if updates, deletes := obs.changes(); updates != edits || deletes != 0 {
		t.Errorf("watched %d updates and %d deletes of EnvoyFilters, want %d updates (one per edit) and no delete", updates, deletes, edits)
	}
	checkWeights(t, obs, n, weights)
	res := editResult{
		Services: n, Edits: edits, Controller: controllerFlags(),
		ToEnvoyFilter: summarize(toFilter), ToSidecar: summarize(toSidecar),
		APIServerWrites: writes, RunSeconds: time.Since(begin).Seconds(),
	}
	reportEdits(t, res)
}

// nextWeight is a new weight for v1, never the one before, from 1 to 99 (both subsets
// keep traffic, so the route stays weighted).
func nextWeight(v1 int) int { return v1%99 + 1 }

// editWeights updates service i's VirtualService to send v1 percent to subset v1 and
// returns when the apiserver accepted it: when the update call returned.
func editWeights(t *testing.T, istio istioclient.Interface, i, v1 int) time.Time {
	t.Helper()
	ctx := t.Context()
	vss := istio.NetworkingV1().VirtualServices(appNS)
	vs, err := vss.Get(ctx, name(i), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get VirtualService %s: %v", name(i), err)
	}
	setWeights(&vs.Spec, host(i), v1)
	if _, err := vss.Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update VirtualService %s: %v", name(i), err)
	}
	return time.Now()
}

// waitEdit waits until service i's outbound EnvoyFilter and the sidecar's listener of
// the service both route v1 percent to subset v1, and returns when each was seen.
func waitEdit(t *testing.T, h *harness, obs *observer, i, v1 int) (filterAt, sidecarAt time.Time) {
	t.Helper()
	want := wantWeights(host(i), v1)
	listenerName := vip(i) + "_" + strconv.Itoa(dubboPort)
	what := fmt.Sprintf("%s's EnvoyFilter and the sidecar's listener %s to route %s", name(i), listenerName, want)
	waitFor(t, what, h.sc.limit, func(context.Context) (bool, error) {
		if err := h.ae.Running(); err != nil {
			return false, err
		}
		if filterAt.IsZero() {
			v, err := outboundWith(obs, appNS+"/"+name(i), want)
			if err != nil {
				return false, err
			}
			filterAt = v.at
		}
		if sidecarAt.IsZero() {
			l, err := h.sc.serviceListener(listenerName)
			if err != nil {
				return false, err
			}
			if l.weights == want {
				sidecarAt = l.since
			}
		}
		return !filterAt.IsZero() && !sidecarAt.IsZero(), nil
	})
	return filterAt, sidecarAt
}

// outboundWith returns the version of service's outbound EnvoyFilter if it routes
// with the weights want, and the zero version otherwise. More than one outbound
// EnvoyFilter for the service is an error.
func outboundWith(obs *observer, service, want string) (version, error) {
	vs := obs.ofService(service, rootNS)
	if len(vs) > 1 {
		return version{}, fmt.Errorf("service %s has %d outbound EnvoyFilters, want one: %v", service, len(vs), slices.Sorted(maps.Keys(vs)))
	}
	for _, v := range vs {
		dp, err := envoyFilterDubbo(v.ef)
		if err != nil || dp == nil || routeWeights(dp) != want {
			return version{}, err
		}
		return v, nil
	}
	return version{}, nil
}

// checkWeights fails the test unless every service's outbound EnvoyFilter routes
// with its weights: those of the edits, or the initial ones.
func checkWeights(t *testing.T, obs *observer, n int, edited map[int]int) {
	t.Helper()
	var wrong []string
	for i := range n {
		v, err := outboundWith(obs, appNS+"/"+name(i), wantWeights(host(i), cmp.Or(edited[i], initialWeight)))
		if err != nil {
			t.Fatal(err)
		}
		if v.ef == nil {
			wrong = append(wrong, name(i))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d services' outbound EnvoyFilters lack their VirtualService's weights, e.g. %s", len(wrong), n, wrong[0])
	}
}

// reportEdits logs the results as a table and as one JSON line for tools.
func reportEdits(t *testing.T, r editResult) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "edit latency: %d services, %d edits one at a time; aeraki %s\n", r.Services, r.Edits, strings.Join(r.Controller, " "))
	row := func(k, v string) { fmt.Fprintf(&b, "  %-58s %s\n", k, v) }
	row("VirtualService update accepted -> EnvoyFilter seen", r.ToEnvoyFilter.String())
	row("VirtualService update accepted -> sidecar's listener", r.ToSidecar.String())
	row("apiserver EnvoyFilter writes (by verb)", fmt.Sprint(r.APIServerWrites))
	row("test run time", time.Duration(r.RunSeconds*float64(time.Second)).Round(time.Second).String())
	t.Log(b.String())
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("edit-result %s", js)
}
