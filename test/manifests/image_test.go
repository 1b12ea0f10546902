package manifests

import (
	"context"
	"crypto/tls"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/test/controlplane"
)

const dockerfile = "docker/Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

type stage struct {
	from, name string
	instrs     []instruction
}

// parseDockerfile splits a Dockerfile into stages. It knows what this repository's
// Dockerfile uses: comments, line continuations, FROM ... AS name.
func parseDockerfile(text string) ([]stage, error) {
	var stages []stage
	var pending string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if pending == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("%s before FROM", in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if pending != "" {
		return nil, errors.New("a line continuation at the end of the file")
	}
	return stages, nil
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// env returns the stage's ENV settings (the KEY=value form).
func (s stage) env() map[string]string {
	out := map[string]string{}
	for _, a := range s.all("ENV") {
		for _, kv := range strings.Fields(a) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

// imageBuild is how docker/Dockerfile builds the binary.
type imageBuild struct {
	run    string            // the RUN command that builds
	env    map[string]string // the build stage's ENV
	binary string            // where the runtime stage copies the binary from
}

// readImageBuild checks the Dockerfile's shape and returns its build command: the
// binary is built by `make build` (the only definition of the build flags), from
// every directory of this module that cmd/aeraki needs, with the Go version of go.mod,
// and runs as a non-root user in an empty image.
func readImageBuild(t *testing.T) imageBuild {
	t.Helper()
	text := readFile(t, dockerfile)
	stages, err := parseDockerfile(text)
	if err != nil {
		t.Fatalf("%s: %v", dockerfile, err)
	}
	if len(stages) != 2 || stages[0].name == "" {
		t.Fatalf("%s: want two stages, a named build stage and the runtime image; got %+v", dockerfile, stages)
	}
	build, runtime := stages[0], stages[1]

	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readFile(t, "go.mod"))
	if goVersion == nil || build.from != "golang:"+goVersion[1] {
		t.Errorf("build stage FROM %s, want golang:%s (go.mod)", build.from, goVersion)
	}
	if strings.Contains(text, "go build") {
		t.Errorf("%s runs `go build` itself: build with `make build` so the flags have one definition", dockerfile)
	}
	var ib imageBuild
	for _, r := range build.all("RUN") {
		if regexp.MustCompile(`(^|[;&|]\s*)make build(\s|$)`).MatchString(r) {
			if ib.run != "" {
				t.Errorf("two RUN instructions build: %q and %q", ib.run, r)
			}
			ib.run = r
		}
	}
	if ib.run == "" {
		t.Fatalf("%s: no RUN of `make build` in the build stage", dockerfile)
	}
	ib.env = build.env()
	if ib.env["BIN"] == "" {
		t.Fatalf("%s: the build stage sets no ENV BIN (where make build writes the binary)", dockerfile)
	}

	copied := map[string]bool{}
	for _, c := range build.all("COPY") {
		f := strings.Fields(c)
		for _, src := range f[:len(f)-1] {
			copied[path.Clean(src)] = true
		}
	}
	for _, need := range append(moduleDirs(t, "./cmd/aeraki"), "go.mod", "go.sum", "Makefile") {
		if !copied[need] {
			t.Errorf("%s does not COPY %s, which the build needs", dockerfile, need)
		}
	}

	if runtime.from != "scratch" {
		t.Errorf("runtime image %s, want scratch", runtime.from)
	}
	want := "--from=" + build.name + " " + path.Join(ib.env["BIN"], "aeraki") + " "
	for _, c := range runtime.all("COPY") {
		if dst, ok := strings.CutPrefix(c, want); ok {
			ib.binary = strings.TrimSpace(dst)
		}
	}
	if ib.binary == "" {
		t.Errorf("runtime stage: no COPY %s<dest>", want)
	}
	if users := runtime.all("USER"); len(users) != 1 || !regexp.MustCompile(`^[1-9]\d*(:[1-9]\d*)?$`).MatchString(users[0]) {
		t.Errorf("runtime stage USER %q, want one numeric non-root uid[:gid] (runAsNonRoot needs a number)", users)
	}
	if eps := runtime.all("ENTRYPOINT"); len(eps) != 1 || eps[0] != fmt.Sprintf("[%q]", ib.binary) {
		t.Errorf("runtime stage ENTRYPOINT %q, want [%q]", eps, ib.binary)
	}
	return ib
}

// moduleDirs returns the top-level directories of this module holding the packages
// pkg depends on.
func moduleDirs(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", pkg)
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var dirs []string
	for _, d := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(repoRoot, d)
		if err != nil {
			t.Fatal(err)
		}
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		if !slices.Contains(dirs, top) {
			dirs = append(dirs, top)
		}
	}
	return dirs
}

// TestImageBinary builds the binary with the Dockerfile's own build command (only the
// output directory differs), checks it is static, stripped and path-free and that its
// flags' defaults read istiod's root certificate and token where the Deployment mounts
// them, then runs it as a pod of k8s/aeraki.yaml runs: with the Deployment's arguments,
// as aeraki's ServiceAccount, in istio-system, against a real kube-apiserver and an
// istiod run as a stock install runs it (TLS on its secure port, the "api" generator
// only for verified identities of the root namespace, nothing switched off). Only what
// loopback needs differs: istiod's address and the name its certificate is checked
// for, the files of the mesh root certificate and of the token (the ConfigMap
// istio-ca-root-cert istiod wrote, and a token of the ServiceAccount for the audience
// istio-ca, as the kubelet mounts them), and the metrics and probe addresses. It must
// become ready (istiod accepted its identity and sent its config), serve /metrics over
// HTTPS to an authorized token only (its ServiceAccount reviews the token), become leader (Lease and Event in its namespace), write a Redis Service's EnvoyFilter
// and its RedisService's status, log no "forbidden", and stop on SIGTERM with no error
// logged, releasing the Lease.
func TestImageBinary(t *testing.T) {
	ib := readImageBuild(t)
	if t.Failed() {
		t.FailNow()
	}
	bin := buildLikeTheImage(t, ib)
	checkReleaseBinary(t, bin)
	checkFlagDefaults(t, bin, map[string]string{
		"istiod-addr": defaultIstiodAddr, "istiod-root-cert": defaultRootCert, "istiod-token": defaultToken,
		"istiod-server-name": "", "istiod-plaintext": "", "leader-election-id": defaultLeaseName,
		"metrics-secure": "true", "metrics-cert-dir": "",
	})
	if t.Failed() {
		t.FailNow() // the Deployment below would not run as k8s/aeraki.yaml means it to
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*timeout)
	defer cancel()
	cp := controlplane.StartForTest(t, controlplane.Options{WorkDir: t.TempDir(), StockIstiod: true})
	if err := installManifest(t, cp.RestConfig); err != nil {
		t.Fatal(err)
	}
	// What the kubelet would mount: the root certificate of the ConfigMap istiod wrote,
	// a token of aeraki's ServiceAccount for istiod's audience.
	ic, err := cp.IstiodClient(ctx, filepath.Join(t.TempDir(), "secrets"), installNamespace, "aeraki")
	if err != nil {
		t.Fatal(err)
	}
	deploy := readDeployment(t)
	ctr := deploy.Spec.Template.Spec.Containers[0]
	addrs, err := controlplane.FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, probeAddr, routesAddr := addrs[0], addrs[1], addrs[2]
	args := containerArgs(t, ctr, map[string]string{"POD_NAMESPACE": installNamespace})
	args = setFlag(args, "istiod-addr", ic.Addr)
	args = setFlag(args, "istiod-server-name", ic.ServerName)
	args = setFlag(args, "istiod-root-cert", ic.RootCertFile)
	args = setFlag(args, "istiod-token", ic.TokenFile)
	args = setFlag(args, "metrics-addr", metricsAddr)
	args = setFlag(args, "probe-addr", probeAddr)
	args = setFlag(args, "route-server-addr", routesAddr)
	args = setFlag(args, "secret-poll", "500ms")
	args = setFlag(args, "kubeconfig", writeKubeconfig(t, serviceAccountConfigFor(t, cp.RestConfig, installNamespace)))
	leaseName := leaderElectionID(args)
	rootNamespace, ok := flagValue(args, "root-namespace")
	if !ok {
		t.Fatal("the Deployment's args lack --root-namespace")
	}

	admin, _ := newClient(t, cp.RestConfig)
	if err := ensureNamespace(ctx, admin, "shop"); err != nil {
		t.Fatal(err)
	}
	cache := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "cache"},
			Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
	rs := &redisv1alpha1.RedisService{
		ObjectMeta: metav1.ObjectMeta{Name: "image-binary", Namespace: "shop"},
		Spec:       redisspec.RedisServiceSpec{Host: []string{"cache"}},
	}
	// A second Redis service whose servers' password is in a Secret of shop, which
	// has not granted aeraki anything yet.
	sessions := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sessions", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "sessions"},
			Ports:    []corev1.ServicePort{{Name: "tcp-redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}},
		},
	}
	serversAuth := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sessions-servers", Namespace: "shop"}, StringData: map[string]string{"password": "pw"}}
	rd := &redisv1alpha1.RedisDestination{
		ObjectMeta: metav1.ObjectMeta{Name: "sessions", Namespace: "shop"},
		Spec: redisspec.RedisDestinationSpec{Host: "sessions", TrafficPolicy: &redisspec.TrafficPolicy{ConnectionPool: &redisspec.ConnectionPoolSettings{
			Redis: &redisspec.RedisConnectionSettings{Auth: &redisspec.Auth{Secret: &redisspec.SecretReference{Name: "sessions-servers"}}},
		}}},
	}
	for _, obj := range []client.Object{cache, rs, sessions, serversAuth, rd} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(bin, args...)
	cmd.Env = append(withoutEnv(os.Environ(), "KUBECONFIG", "POD_NAMESPACE"), "POD_NAMESPACE="+installNamespace)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	// running fails the waits below at once if aeraki has exited.
	running := func(cond func() (bool, error)) func() (bool, error) {
		return func() (bool, error) {
			select {
			case <-done:
				if waitErr == nil {
					return false, errors.New("aeraki exited with status 0")
				}
				return false, fmt.Errorf("aeraki exited: %w", waitErr)
			default:
				return cond()
			}
		}
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("aeraki %q log:\n%s", args, logs.String())
		}
	})
	t.Logf("started aeraki, pid %d, istiod %s (TLS, %s), probes %s, metrics %s", pid, ic.Addr, ic.ServerName, probeAddr, metricsAddr)

	waitFor(ctx, t, "/healthz to answer 200", running(func() (bool, error) {
		code, _, err := httpGet(ctx, "http://"+probeAddr+"/healthz")
		return err == nil && code == http.StatusOK, nil
	}))
	// Ready needs the caches' sync and the first xDS sync: istiod took the token.
	var readyz string
	ready := running(func() (bool, error) {
		code, body, err := httpGet(ctx, "http://"+probeAddr+"/readyz?verbose")
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		readyz = fmt.Sprintf("%d %q", code, body)
		return code == http.StatusOK && strings.Contains(body, "[+]xds ok") && strings.Contains(body, "[+]cache ok"), nil
	})
	// Every failed /readyz is a log line of aeraki's: poll it gently.
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return ready() })
	if err != nil {
		_, why, _ := httpGet(ctx, "http://"+probeAddr+"/readyz/xds")
		t.Fatalf("not ready with istiod's secure port: /readyz %s; /readyz/xds %q", readyz, why)
	}
	checkSecureMetrics(ctx, t, metricsAddr, cp.RestConfig.BearerToken)

	lease := &coordinationv1.Lease{}
	waitFor(ctx, t, "the leader Lease", running(func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: leaseName}, lease)
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", client.IgnoreNotFound(err)
	}))
	waitFor(ctx, t, "the LeaderElection Event", running(func() (bool, error) {
		var evs corev1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace(installNamespace)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.Reason == "LeaderElection" && e.InvolvedObject.Name == leaseName
		}), nil
	}))
	// The Service's config came from istiod (its synthetic ServiceEntry), the
	// EnvoyFilter goes to the root namespace.
	outbound := &unstructured.Unstructured{}
	outbound.SetGroupVersionKind(schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1alpha3", Kind: "EnvoyFilter"})
	waitFor(ctx, t, "the Redis Service's outbound EnvoyFilter", running(func() (bool, error) {
		err := admin.Get(ctx, client.ObjectKey{Namespace: rootNamespace, Name: "aeraki-outbound-cache.shop.svc.cluster.local-6379"}, outbound)
		return err == nil, client.IgnoreNotFound(err)
	}))
	waitFor(ctx, t, "the RedisService's Ready condition", running(func() (bool, error) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(rs.Status.Conditions, redisv1alpha1.ConditionReady)
		return c != nil && c.Reason == redisspec.ReasonAccepted && rs.Status.ObservedGeneration == rs.Generation, nil
	}))

	// The Secret of a namespace that granted nothing: the RedisDestination says so;
	// once shop grants it as the README shows, it is in effect.
	rdReason := func(want string) func() (bool, error) {
		return running(func() (bool, error) {
			if err := admin.Get(ctx, client.ObjectKeyFromObject(rd), rd); err != nil {
				return false, err
			}
			c := apimeta.FindStatusCondition(rd.Status.Conditions, redisv1alpha1.ConditionReady)
			return c != nil && c.Reason == want, nil
		})
	}
	waitFor(ctx, t, "the RedisDestination to say its Secret is not granted", rdReason(redisspec.ReasonSecretNotGranted))
	grant := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "aeraki-secret-reader", Namespace: "shop"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "aeraki-secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "aeraki", Namespace: installNamespace}},
	}
	if err := admin.Create(ctx, grant); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the RedisDestination to be in effect once shop granted its Secrets", rdReason(redisspec.ReasonAccepted))

	beforeStop := len(logs.String())
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		stopped = true
		if waitErr != nil {
			t.Errorf("aeraki exited with %v after SIGTERM, want 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("aeraki did not stop within 30s of SIGTERM")
	}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: leaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Errorf("Lease still held by %q after a clean stop: want it released", *lease.Spec.HolderIdentity)
	}
	if strings.Contains(strings.ToLower(logs.String()), "forbidden") {
		t.Errorf("the log shows a request RBAC denied")
	}
	// A stop we asked for reads as one: no error and no stack trace after SIGTERM.
	if stop := logs.String()[beforeStop:]; strings.Contains(stop, `"level":"error"`) || strings.Contains(stop, "stacktrace") {
		t.Errorf("the log after SIGTERM shows an error:\n%s", stop)
	}
}

// checkFlagDefaults checks the defaults `bin -h` prints for the given flags; "" is a
// flag whose help shows none (an empty string, a false bool).
func checkFlagDefaults(t *testing.T, bin string, want map[string]string) {
	t.Helper()
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Errorf("%s -h: %v\n%s", bin, err, out)
		return
	}
	got := flagDefaults(string(out))
	for name, def := range want {
		d, ok := got[name]
		switch {
		case !ok:
			t.Errorf("the binary has no flag --%s", name)
		case d != def:
			t.Errorf("--%s defaults to %q, want %q (what k8s/aeraki.yaml relies on)", name, d, def)
		}
	}
}

// flagDefaults reads Go's flag.PrintDefaults output: each flag's default ("" when its
// help shows none), by name.
func flagDefaults(help string) map[string]string {
	out := map[string]string{}
	flagLine := regexp.MustCompile(`^  -([A-Za-z0-9][-A-Za-z0-9_.]*)(\s|$)`)
	def := regexp.MustCompile(`\(default ("(?:[^"\\]|\\.)*"|[^)]*)\)\s*$`)
	var name, text string
	flush := func() {
		if name == "" {
			return
		}
		out[name] = ""
		if m := def.FindStringSubmatch(text); m != nil {
			v := m[1]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			out[name] = v
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flush()
			name, text = m[1], ""
			continue
		}
		if name != "" {
			text += strings.TrimSpace(line) + " "
		}
	}
	flush()
	return out
}

// buildLikeTheImage runs the Dockerfile's build command in the repository root with
// the build stage's environment, except that BIN points to a temporary directory.
func buildLikeTheImage(t *testing.T, ib imageBuild) string {
	t.Helper()
	out := t.TempDir()
	env := withoutEnv(os.Environ(), "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
	for k, v := range ib.env {
		if k == "BIN" {
			v = out
		}
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", ib.run)
	cmd.Dir = repoRoot
	cmd.Env = env
	start := time.Now()
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (the Dockerfile's build): %v\n%s", ib.run, err, log)
	}
	t.Logf("%q built the binary in %s", ib.run, time.Since(start).Round(time.Second))
	return filepath.Join(out, "aeraki")
}

// checkReleaseBinary checks what `make build`'s flags promise: no cgo, no build
// paths, no symbol table, no dynamic loader (it runs on an image without libc).
func checkReleaseBinary(t *testing.T, bin string) {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// Go does not record -ldflags with -trimpath; the sections below show -s -w.
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("binary built with %s=%q, want %q", k, settings[k], v)
		}
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (%s)", p.Type)
		}
	}
	for _, sec := range f.Sections {
		switch {
		case sec.Name == ".symtab":
			t.Error("binary has a symbol table: want it stripped (-ldflags=-s)")
		case strings.HasPrefix(sec.Name, ".debug_"), strings.HasPrefix(sec.Name, ".zdebug_"):
			t.Errorf("binary has DWARF (%s): want none (-ldflags=-w)", sec.Name)
		}
	}
}

// readDeployment returns the Deployment of k8s/aeraki.yaml.
func readDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	return deploymentOf(t, docs)
}

// deploymentOf returns the Deployment among docs.
func deploymentOf(t *testing.T, docs []document) *appsv1.Deployment {
	t.Helper()
	for _, d := range docs {
		if d.obj.GetKind() == "Deployment" {
			deploy := &appsv1.Deployment{}
			fromUnstructured(t, d, deploy)
			if len(deploy.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("%s: want one container", d)
			}
			return deploy
		}
	}
	t.Fatal("no Deployment among the documents")
	return nil
}

// containerArgs expands $(VAR) in the container's args as the kubelet does, from the
// container's literal env and the given values of its downward-API variables.
func containerArgs(t *testing.T, ctr corev1.Container, downward map[string]string) []string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case downward[e.Name] != "":
			vars[e.Name] = downward[e.Name]
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	out := make([]string, len(ctr.Args))
	for i, a := range ctr.Args {
		out[i] = ref.ReplaceAllStringFunc(a, func(m string) string {
			v, ok := vars[m[2:len(m)-1]]
			if !ok {
				t.Errorf("arg %q names an unknown variable %s", a, m)
			}
			return v
		})
	}
	return out
}

// setFlag replaces --name=... in args, or appends it.
func setFlag(args []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		return a == "--"+name || strings.HasPrefix(a, "--"+name+"=")
	})
	return append(out, "--"+name+"="+value)
}

func withoutEnv(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// writeKubeconfig writes cfg (server, CA, bearer token) as a kubeconfig file.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["aeraki"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["aeraki"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "aeraki"}
	kc.CurrentContext = "aeraki"
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		t.Fatal(err)
	}
	return file
}

// checkSecureMetrics checks the metrics as the Deployment serves them: HTTPS only,
// 401 without a token, 200 with the token of an admin, which aeraki can only tell
// through the TokenReview and SubjectAccessReview its ClusterRole allows.
func checkSecureMetrics(ctx context.Context, t *testing.T, addr, adminToken string) {
	t.Helper()
	// The Deployment's certificate is self-signed: nothing to verify it against.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // a self-signed certificate, as installed
	}}}
	defer insecure.CloseIdleConnections()
	if code, _, err := httpGet(ctx, "http://"+addr+"/metrics"); err == nil && code == http.StatusOK {
		t.Error("/metrics answers over plain HTTP: want HTTPS only")
	}
	if code, body, err := httpGetWith(ctx, insecure, "https://"+addr+"/metrics", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d %q %v; want 401", code, body, err)
	}
	code, body, err := httpGetWith(ctx, insecure, "https://"+addr+"/metrics", adminToken)
	if err != nil || code != http.StatusOK ||
		!strings.Contains(body, "leader_election_master_status") || !strings.Contains(body, "\naeraki_xds_connected 1\n") {
		t.Errorf("/metrics with an admin's token: %d %v; want 200 with controller-runtime's metrics and aeraki_xds_connected 1\n%.300s", code, err, body)
	}
}

func httpGet(ctx context.Context, url string) (int, string, error) {
	return httpGetWith(ctx, http.DefaultClient, url, "")
}

// httpGetWith GETs url with client, with token as a bearer token unless empty.
func httpGetWith(ctx context.Context, client *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
