package scale

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/kube"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/test/controlplane"
)

const (
	envSoakServices = "AERAKI_SOAK_SERVICES"
	envSoakDuration = "AERAKI_SOAK_DURATION"
	// What `go test ./...` runs: with the setup and the final checks (about half a
	// minute on 2 cores) the test takes about 5 minutes. `make soak` sets 1,000
	// services and an hour.
	defaultSoakServices = 200
	defaultSoakDuration = 4*time.Minute + 30*time.Second
	// churnPeriod is how often a round of changes starts.
	churnPeriod = 3 * time.Second
	// secretPoll is the controller's --secret-poll: a rotation reaches it within this.
	secretPoll = 2 * time.Second
	// soakResync is the controller's --resync, short so that every soak sees resyncs,
	// which must write nothing.
	soakResync = 2 * time.Minute
	// istiodRestarts restart istiod evenly spread over the churn.
	istiodRestarts = 2
	// roundLimit bounds one round: a round after an istiod restart waits for the
	// controller's reconnect (backoff) and istiod's first push.
	roundLimit = 2 * timeout

	// The Redis service whose client password comes from a Secret the soak rotates.
	redisName   = "cache"
	redisPort   = 6379
	redisSecret = "cache-clients"
)

// soakResult is what TestSoak measured; it is logged as a table and as one JSON line.
type soakResult struct {
	Services   int      `json:"services"`
	Controller []string `json:"controller_flags"`
	Seconds    float64  `json:"churn_seconds"`
	Rounds     int      `json:"rounds"`
	// Round runs from a round's first change to the last of its effects being seen.
	Round          latencyStats   `json:"round_seconds"`
	IstiodRestarts int            `json:"istiod_restarts"`
	Writes         map[string]int `json:"apiserver_envoyfilter_writes"`
	WantWrites     map[string]int `json:"expected_envoyfilter_writes"`
	RSSMiB         series         `json:"controller_rss_mib"`
	// HeapMiB is the Go heap in use (go_memstats_heap_inuse_bytes): reported beside
	// the RSS, to tell the heap's growth from the runtime's.
	HeapMiB    series `json:"controller_heap_inuse_mib"`
	Goroutines series `json:"controller_goroutines"`
	OpenFDs    series `json:"controller_open_fds"`
	// Fresh is how many EnvoyFilters the cluster and a fresh translation of its final
	// config both have, equal.
	Fresh      int     `json:"envoyfilters_equal_to_fresh_translation"`
	RunSeconds float64 `json:"test_run_seconds"`
}

// series is a sampled value: its first, last and highest sample, and its baseline,
// the first sample once the controller has warmed up (see sampler), which the last
// is checked against.
type series struct {
	Samples  int     `json:"samples"`
	First    float64 `json:"first"`
	Baseline float64 `json:"baseline"`
	Last     float64 `json:"last"`
	Max      float64 `json:"max"`
	warm     bool
}

func (s *series) add(v float64, warm bool) {
	if s.Samples == 0 {
		s.First = v
	}
	if warm && !s.warm {
		s.Baseline, s.warm = v, true
	}
	s.Samples++
	s.Last, s.Max = v, max(s.Max, v)
}

// TestSoak keeps the controller busy with steady churn on a real apiserver and
// istiod, and checks that it neither loses nor repeats a write, ends with exactly
// the EnvoyFilters a fresh translation of the final config gives, and holds no more
// memory, goroutines or open files at the end than at the start (within noise).
//
// N Dubbo services and one Redis service (its clients' password from a Secret) are
// created first. Then, every churnPeriod, a round: one VirtualService's weights
// change, a ServiceEntry is added and the one the round before added is deleted, and
// the Secret is rotated; the round ends when all four are seen in the EnvoyFilters
// (so each change writes on its own: an add and a delete of the same ServiceEntry
// never merge into no write). istiod is restarted twice on the way.
func TestSoak(t *testing.T) {
	n := envInt(t, envSoakServices, defaultSoakServices, maxServices)
	duration := soakDuration(t)
	begin := time.Now()
	flags := []string{"--secret-poll=" + secretPoll.String(), "--resync=" + soakResync.String()}
	h := startHarness(t, n, false, flags...)
	obs := observe(t, h.istio)
	rc := redisClient(t, h)
	createRedis(t, h, rc)
	createRouting(t, h.istio, n)
	createServiceEntries(t, h.istio, n)
	c := &churn{h: h, obs: obs, n: n, weights: map[int]int{}}
	c.addService(t, 0)
	// Every Dubbo service, the first churned one and the Redis service.
	waitVisible(t, h.ae, obs, n+2)
	c.waitSecret(t, secretValue(0))

	res := soakResult{Services: n, Controller: slices.Concat(controllerFlags(), flags)}
	before := efWriteCount(t, h.cp)
	updatesBefore, deletesBefore := obs.changes()
	sample := sampler(t, h.ae, &res)
	sample()
	res.Round, res.IstiodRestarts, res.Seconds = c.run(t, duration, sample)
	res.Rounds = c.round

	// Each round updates two EnvoyFilters (the VirtualService's and the Secret's),
	// creates two and deletes two (the added and the deleted ServiceEntry's outbound
	// and inbound).
	res.WantWrites = map[string]int{"PUT": 2 * c.round, "POST": 2 * c.round, "DELETE": 2 * c.round}
	res.Writes = checkIdlePush(t, h.cp, h.ae, h.istio, h.kube, before, res.WantWrites)
	if updates, deletes := obs.changes(); updates-updatesBefore != 2*c.round || deletes-deletesBefore != 2*c.round {
		t.Errorf("watched %d updates and %d deletes of EnvoyFilters in %d rounds, want %d of each",
			updates-updatesBefore, deletes-deletesBefore, c.round, 2*c.round)
	}
	if errs := aerakiSamples(t, h.ae).sum("aeraki_envoyfilter_write_errors_total", nil); errs != 0 {
		t.Errorf("aeraki_envoyfilter_write_errors_total = %v, want 0", errs)
	}
	res.Fresh = checkFresh(t, rc, obs)
	sample()
	checkLeaks(t, res)
	res.RunSeconds = time.Since(begin).Seconds()
	reportSoak(t, res)
}

// soakDuration reads AERAKI_SOAK_DURATION and fails early if the test's deadline
// (go test -timeout) leaves no room for it.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	d := defaultSoakDuration
	if v := os.Getenv(envSoakDuration); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration such as 1h or 90s", envSoakDuration, v)
		}
	}
	// Setup and checks take a minute or two at 1,000 services.
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < d+3*time.Minute {
		t.Fatalf("%s=%s does not fit in the test's timeout (%s left): raise go test -timeout (make soak: AERAKI_SOAK_TIMEOUT)", envSoakDuration, d, time.Until(deadline).Round(time.Second))
	}
	return d
}

// churn is the soak's changes and what it expects of them.
type churn struct {
	h       *harness
	obs     *observer
	n       int
	weights map[int]int // service -> weight of v1, once edited
	round   int
}

// run makes rounds of changes every churnPeriod for duration, restarting istiod
// istiodRestarts times on the way, and calls sample every samplePeriod. It returns
// the rounds' times, the restarts and how long it ran.
func (c *churn) run(t *testing.T, duration time.Duration, sample func()) (latencyStats, int, float64) {
	t.Helper()
	begin := time.Now()
	period := samplePeriod(duration)
	nextSample := begin.Add(period)
	restarts := 0
	var rounds []time.Duration
	for time.Since(begin) < duration {
		start := time.Now()
		if restarts < istiodRestarts && time.Since(begin) >= duration*time.Duration(restarts+1)/(istiodRestarts+1) {
			c.restartIstiod(t)
			restarts++
		}
		rounds = append(rounds, c.next(t))
		if time.Now().After(nextSample) {
			sample()
			nextSample = nextSample.Add(period)
		}
		time.Sleep(time.Until(start.Add(churnPeriod)))
	}
	if len(rounds) == 0 {
		t.Fatal("the soak made no round of changes")
	}
	return summarize(rounds), restarts, time.Since(begin).Seconds()
}

// samplePeriod is a minute for an hour's soak, and shorter for short ones so that
// they have some samples too.
func samplePeriod(duration time.Duration) time.Duration {
	return min(time.Minute, max(5*time.Second, duration/30))
}

// next makes one round of changes, waits until each is seen in the EnvoyFilters and
// returns how long that took.
func (c *churn) next(t *testing.T) time.Duration {
	t.Helper()
	c.round++
	k := c.round
	i := (k - 1) % c.n
	w := nextWeight(cmp.Or(c.weights[i], initialWeight))
	c.weights[i] = w
	begin := time.Now()
	editWeights(t, c.h.istio, i, w)
	c.addService(t, k)
	if err := c.h.istio.NetworkingV1().ServiceEntries(appNS).Delete(t.Context(), churnName(k-1), metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ServiceEntry %s: %v", churnName(k-1), err)
	}
	c.rotateSecret(t, k)

	want := wantWeights(host(i), w)
	added, deleted := appNS+"/"+churnName(k), appNS+"/"+churnName(k-1)
	waitFor(t, fmt.Sprintf("round %d's changes in the EnvoyFilters", k), roundLimit, func(context.Context) (bool, error) {
		if err := c.h.ae.Running(); err != nil {
			return false, err
		}
		v, err := outboundWith(c.obs, appNS+"/"+name(i), want)
		if err != nil || v.ef == nil {
			return false, err
		}
		return len(c.obs.ofService(added, rootNS)) == 1 && len(c.obs.ofService(added, appNS)) == 1 &&
			len(c.obs.ofService(deleted, rootNS)) == 0 && len(c.obs.ofService(deleted, appNS)) == 0 &&
			c.secretSeen(secretValue(k)), nil
	})
	return time.Since(begin)
}

// restartIstiod stops istiod and starts it again on the same addresses.
func (c *churn) restartIstiod(t *testing.T) {
	t.Helper()
	if err := c.h.cp.StopIstiod(); err != nil {
		t.Fatal(err)
	}
	if err := c.h.cp.StartIstiod(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("round %d: istiod restarted", c.round)
}

// churnName is the ServiceEntry round k adds; churn-00000 is created before the
// first round.
func churnName(k int) string { return fmt.Sprintf("churn-%05d", k) }

// addService creates round k's Dubbo ServiceEntry (without routing objects), on an
// address range of its own; only one of them lives at a time, so addresses may wrap.
func (c *churn) addService(t *testing.T, k int) {
	t.Helper()
	nm := churnName(k)
	se := serviceEntry(nm, nm+"."+appNS+".example", fmt.Sprintf("240.242.%d.%d", k/250%256, k%250+1),
		map[string]string{"interface": "org.example.Churn" + strconv.Itoa(k)})
	if _, err := c.h.istio.NetworkingV1().ServiceEntries(appNS).Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry %s: %v", nm, err)
	}
}

// secretValue is the clients' password after round k.
func secretValue(k int) string { return "soak-password-" + strconv.Itoa(k) }

// rotateSecret gives the Redis clients a new password.
func (c *churn) rotateSecret(t *testing.T, k int) {
	t.Helper()
	secrets := c.h.kube.CoreV1().Secrets(appNS)
	s, err := secrets.Get(t.Context(), redisSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Secret %s: %v", redisSecret, err)
	}
	s.Data = map[string][]byte{"password": []byte(secretValue(k))}
	if _, err := secrets.Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update Secret %s: %v", redisSecret, err)
	}
}

// secretSeen reports whether the Redis service's outbound EnvoyFilter carries
// password (it is written inline: Envoy's redis_proxy takes no Secret reference).
func (c *churn) secretSeen(password string) bool {
	for _, v := range c.obs.ofService(appNS+"/"+redisName, rootNS) {
		js, err := canonicalJSON(&v.ef.Spec)
		if err == nil && strings.Contains(js, strconv.Quote(password)) {
			return true
		}
	}
	return false
}

// waitSecret waits until the Redis service's outbound EnvoyFilter carries password.
func (c *churn) waitSecret(t *testing.T, password string) {
	t.Helper()
	waitFor(t, "the Redis clients' password in its EnvoyFilter", timeout, func(context.Context) (bool, error) {
		return c.secretSeen(password), c.h.ae.Running()
	})
}

// redisClient is a client of the control plane that knows our Redis types.
func redisClient(t *testing.T, h *harness) client.Client {
	t.Helper()
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(unthrottled(h.cp.RestConfig), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createRedis creates a Redis ServiceEntry and a RedisService whose clients
// authenticate with the password in a Secret of the namespace. The controller runs
// with the admin kubeconfig, so every namespace grants it its Secrets; in a cluster
// the namespace would bind aeraki-secret-reader (README, Redis auth).
func createRedis(t *testing.T, h *harness, rc client.Client) {
	t.Helper()
	ctx := t.Context()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: redisSecret, Namespace: appNS},
		Data: map[string][]byte{"password": []byte(secretValue(0))}}
	rs := &redisv1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: redisName, Namespace: appNS},
		Spec: redisspec.RedisServiceSpec{
			Host:     []string{redisHost()},
			Settings: &redisspec.RedisSettings{Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: redisSecret}}},
		},
	}
	for _, obj := range []client.Object{secret, rs} {
		if err := rc.Create(ctx, obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	se := serviceEntry(redisName, redisHost(), "240.243.0.1", nil)
	se.Spec.Ports[0].Number, se.Spec.Ports[0].Name = redisPort, "tcp-redis"
	if _, err := h.istio.NetworkingV1().ServiceEntries(appNS).Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry %s: %v", redisName, err)
	}
}

func redisHost() string { return redisName + "." + appNS + ".example" }

// translationInputs are the kinds the controller translates from, read back from the
// apiserver for a fresh translation.
var translationInputs = []schema.GroupVersionKind{
	{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry"},
	{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
	{Group: "networking.istio.io", Version: "v1", Kind: "DestinationRule"},
	{Group: "networking.istio.io", Version: "v1", Kind: "WorkloadEntry"},
	{Version: "v1", Kind: "Service"},
	{Version: "v1", Kind: "Secret"},
	{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSlice"},
	{Group: redisv1alpha1.GroupVersion.Group, Version: redisv1alpha1.GroupVersion.Version, Kind: "RedisService"},
	{Group: redisv1alpha1.GroupVersion.Group, Version: redisv1alpha1.GroupVersion.Version, Kind: "RedisDestination"},
}

// checkFresh fails the test unless the cluster's EnvoyFilters are exactly those a
// fresh translation of the final config gives. The config is read back from the
// apiserver as YAML and translated as `aeraki generate -f` does (pkg/manifest, then
// pkg/translate): the controller's own translation, without any of its state (the
// per-service cache, the remembered comparisons) that hours of changes built up. A
// second controller would read the same config through istiod, but could only be
// compared by what it writes, and must not write. It returns how many EnvoyFilters
// are equal.
func checkFresh(t *testing.T, rc client.Client, obs *observer) int {
	t.Helper()
	var doc bytes.Buffer
	for _, gvk := range translationInputs {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := rc.List(t.Context(), list); err != nil {
			t.Fatalf("list %s: %v", gvk.Kind, err)
		}
		for _, item := range list.Items {
			js, err := yaml.Marshal(item.Object)
			if err != nil {
				t.Fatalf("%s %s/%s as YAML: %v", gvk.Kind, item.GetNamespace(), item.GetName(), err)
			}
			doc.WriteString("---\n")
			doc.Write(js)
		}
	}
	objs := &manifest.Objects{}
	if errs := objs.Decode(&doc, "the cluster"); len(errs) > 0 {
		t.Fatalf("reading the cluster's config: %v", errs)
	}
	// As the controller runs: no route server (plaintext), and an istiod that reports
	// no version (a plain build) is the newest, as generate's default.
	ctx := generator.Context{RootNamespace: rootNS, DomainSuffix: "cluster.local", Istiod: model.NewIstiod("")}
	tr, err := translate.Translate(ctx, plugin.Registry(plugin.Options{}), objs.Snapshot(ctx.DomainSuffix))
	if err != nil {
		t.Fatal(err)
	}
	current := map[string]*model.EnvoyFilter{}
	for _, ef := range obs.filters() {
		current[ef.Namespace+"/"+ef.Name] = &model.EnvoyFilter{Name: ef.Name, Namespace: ef.Namespace, Labels: ef.Labels, Annotations: ef.Annotations, Spec: &ef.Spec}
	}
	var diffs []string
	equal := 0
	for key, want := range tr.Filters {
		switch got, ok := current[key]; {
		case !ok:
			diffs = append(diffs, "missing "+key)
		case !want.UpToDate(got):
			diffs = append(diffs, "differs "+key)
		default:
			equal++
		}
	}
	for key := range current {
		if tr.Filters[key] == nil {
			diffs = append(diffs, "extra "+key)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("the cluster's %d EnvoyFilters are not the %d of a fresh translation: %d differ, e.g. %v",
			len(current), len(tr.Filters), len(diffs), diffs[:min(len(diffs), 5)])
	}
	return equal
}

// sampler returns a function that adds one sample of the controller's resident
// memory, heap, goroutines and open files to res, and logs it. Samples from
// soakResync on after the sampler's start are warm: by then the controller has made
// a full translation again (a resync, its largest regular allocation) beside the
// churn, and its heap has grown to what the churn keeps it at; before, it is still
// at what the bulk creation left.
func sampler(t *testing.T, ae *controlplane.Aeraki, res *soakResult) func() {
	begin := time.Now()
	return func() {
		t.Helper()
		rss, err := ae.RSS()
		if err != nil {
			t.Fatal(err)
		}
		fds, err := ae.OpenFDs()
		if err != nil {
			t.Fatal(err)
		}
		m := aerakiSamples(t, ae)
		warm := time.Since(begin) >= soakResync
		res.RSSMiB.add(float64(rss)/(1<<20), warm)
		res.HeapMiB.add(m.sum("go_memstats_heap_inuse_bytes", nil)/(1<<20), warm)
		res.Goroutines.add(m.sum("go_goroutines", nil), warm)
		res.OpenFDs.add(float64(fds), warm)
		t.Logf("sample %d (warm: %t): RSS %.1f MiB, heap in use %.1f MiB, %v goroutines, %d open files",
			res.RSSMiB.Samples, warm, res.RSSMiB.Last, res.HeapMiB.Last, res.Goroutines.Last, fds)
	}
}

// checkLeaks fails the test unless the controller ends where it started, within
// generous bounds for noise: the last sample of goroutines and open files at most
// 10% or 20 (whichever is more) above the baseline, of resident memory at most 25%.
func checkLeaks(t *testing.T, r soakResult) {
	t.Helper()
	if !r.RSSMiB.warm {
		t.Logf("no sample after the warm-up (%s): too short a soak to check for leaks", soakResync)
		return
	}
	counted := func(what string, s series) {
		if limit := max(s.Baseline*1.1, s.Baseline+20); s.Last > limit {
			t.Errorf("%s: %v once warm, %v at the end (more than %v): a leak", what, s.Baseline, s.Last, math.Floor(limit))
		}
	}
	counted("goroutines", r.Goroutines)
	counted("open files", r.OpenFDs)
	if s := r.RSSMiB; s.Last > s.Baseline*1.25 {
		t.Errorf("resident memory: %.1f MiB once warm, %.1f MiB at the end (more than 25%% more): a leak", s.Baseline, s.Last)
	}
}

// reportSoak logs the results as a table and as one JSON line for tools.
func reportSoak(t *testing.T, r soakResult) {
	t.Helper()
	secs := func(s float64) string { return time.Duration(s * float64(time.Second)).Round(time.Second).String() }
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d Dubbo services and one Redis service, churn for %s; aeraki %s\n", r.Services, secs(r.Seconds), strings.Join(r.Controller, " "))
	row := func(k, v string) { fmt.Fprintf(&b, "  %-52s %s\n", k, v) }
	row("rounds (edit, add, delete, rotate), every "+churnPeriod.String(), strconv.Itoa(r.Rounds))
	row("round: first change -> all seen in EnvoyFilters", r.Round.String())
	row("istiod restarts", strconv.Itoa(r.IstiodRestarts))
	row("apiserver EnvoyFilter writes (by verb)", fmt.Sprintf("%v, expected %v", r.Writes, r.WantWrites))
	row("final EnvoyFilters, as a fresh translation gives them", strconv.Itoa(r.Fresh))
	for _, s := range []struct {
		what string
		s    series
	}{{"controller RSS (MiB)", r.RSSMiB}, {"controller Go heap in use (MiB)", r.HeapMiB}, {"controller goroutines", r.Goroutines}, {"controller open files", r.OpenFDs}} {
		row(s.what+", first / warm / last / max", fmt.Sprintf("%.1f / %.1f / %.1f / %.1f (%d samples)", s.s.First, s.s.Baseline, s.s.Last, s.s.Max, s.s.Samples))
	}
	row("test run time", secs(r.RunSeconds))
	t.Log(b.String())
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak-result %s", js)
}
