package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aeraki.io/aeraki/pkg/model/fixture"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: good, namespace: ns, annotations: {interface: org.example.Good}}
spec:
  hosts: [good.example]
  addresses: [240.0.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
`

const badEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bad, namespace: ns, annotations: {interface: "not an interface"}}
spec:
  hosts: [bad.example]
  addresses: [240.0.0.2]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
`

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", goodEntry+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored}\n")
	mixed := write(t, dir, "mixed.yaml", goodEntry+"---\n"+badEntry)
	write(t, dir, "broken.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: typo}\nspec: {hostz: [x]}\n")

	cases := []struct {
		name        string
		args        []string
		code        int
		stdout      []string
		stderr      []string
		emptyStdout bool
	}{
		// As the controller does by default: port 20880 is shared, its routes served.
		{name: "all good", args: []string{"-f", good}, code: 0, stdout: []string{
			"name: aeraki-shared-dubbo-20880", "envoy.filters.network.dubbo_proxy", "routeConfigName: aeraki-shared-dubbo-20880",
			"name: aeraki-route-discovery", "address: aeraki.istio-system.svc.cluster.local", "exact: spiffe://cluster.local/ns/istio-system/sa/aeraki",
			"# Route configuration aeraki-shared-dubbo-20880", "#   - interface: org.example.Good", "cluster: outbound|20880||good.example",
		}},
		{name: "route server settings", args: []string{"-f", good, "--root-namespace=mesh", "--route-server-host=routes.example", "--route-server-port=9443",
			"--trust-domain=corp.example", "--service-account=routes"}, code: 0, stdout: []string{
			"namespace: mesh", "address: routes.example", "portValue: 9443", "exact: spiffe://corp.example/ns/mesh/sa/routes",
		}},
		{name: "without a route server", args: []string{"-f", good, "--route-server-addr="}, code: 0, stdout: []string{"name: aeraki-outbound-good.example-20880", "envoy.filters.network.dubbo_proxy"}},
		// good.yaml and mixed.yaml both hold ns/good: one object, as in a cluster, so
		// port 20880 is shared by it and ns/bad (which fails).
		{name: "directory", args: []string{"-f", dir}, code: 1, stdout: []string{"name: aeraki-shared-dubbo-20880", "#   - interface: org.example.Good"}, stderr: []string{"ServiceEntry ns/bad", `"not an interface" is not a Dubbo interface`, "broken.yaml: document 1", "hostz"}},
		{name: "one bad object, the rest printed", args: []string{"-f", mixed, "--route-server-addr="}, code: 1, stdout: []string{"aeraki-outbound-good.example-20880"}, stderr: []string{"ServiceEntry ns/bad: port 20880 (dubbo)"}},
		{name: "no input", args: nil, code: 2, emptyStdout: true, stderr: []string{"no input"}},
		{name: "bad flag", args: []string{"--nope"}, code: 2, emptyStdout: true},
		{name: "missing file", args: []string{"-f", filepath.Join(dir, "absent.yaml")}, code: 1, emptyStdout: true, stderr: []string{"absent.yaml"}},
		{name: "not a regular file", args: []string{"-f", "/dev/zero"}, code: 1, emptyStdout: true, stderr: []string{"/dev/zero is not a regular file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"generate"}, c.args...), &stdout, &stderr)
			if code != c.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			for _, s := range c.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			if c.emptyStdout && stdout.Len() > 0 {
				t.Errorf("stdout not empty:\n%s", stdout.String())
			}
			if strings.Contains(stdout.String(), "bad.example") {
				t.Error("a filter for the failed service was printed")
			}
		})
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	in := write(t, dir, "in.yaml", goodEntry)
	var first []byte
	for i := range 5 {
		var out, errs bytes.Buffer
		if code := run([]string{"generate", "-f", in}, &out, &errs); code != 0 {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
		if i == 0 {
			first = out.Bytes()
		} else if !bytes.Equal(first, out.Bytes()) {
			t.Fatal("output differs between runs")
		}
	}
}

// TestGenerateRedis reads RedisService, RedisDestination and Secret documents beside
// the Services: the demo's routes, mirror and server auth come out, and a missing
// Secret is an error that names it without printing any credential.
func TestGenerateRedis(t *testing.T) {
	sample := filepath.Join("..", "..", "demo", "redis", "redis-sample.yaml")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"generate", "-f", sample}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{
		"envoy.filters.network.redis_proxy",
		"prefix: 'user:'",
		// The mirror and the route to redis-users use its own port, 6380.
		"cluster: outbound|6380||redis-users.redis.svc.cluster.local",
		"applyTo: CLUSTER",
		"type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	data, err := os.ReadFile(sample) //nolint:gosec // the repository's own sample
	if err != nil {
		t.Fatal(err)
	}
	withoutSecret := strings.Replace(string(data), "kind: Secret", "kind: ConfigMap", 1)
	in := write(t, t.TempDir(), "no-secret.yaml", withoutSecret)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"generate", "-f", in}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d without the Secret, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "redis-servers") || strings.Contains(stderr.String()+stdout.String(), "change-me") {
		t.Errorf("stderr should name the Secret and no credential may be printed:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "aeraki-outbound-redis-users.redis.svc.cluster.local-6380") {
		t.Errorf("the other service's EnvoyFilters are missing:\n%s", stdout.String())
	}
}

// A Service without a clusterIP in the file: on a port with a patch per service, its
// outbound side needs the address, and stderr says so; on a shared port its routes
// are shown, and nothing needs saying.
func TestGenerateServiceWithoutClusterIP(t *testing.T) {
	file := write(t, t.TempDir(), "svc.yaml", `apiVersion: v1
kind: Service
metadata: {name: provider, namespace: ns, annotations: {interface: org.example.Provider}}
spec:
  selector: {app: provider}
  ports: [{name: tcp-dubbo, port: 20880, targetPort: 20880}]
`)
	for _, c := range []struct {
		args     []string
		note     bool
		inStdout string
	}{
		{args: []string{"-f", file}, note: false, inStdout: "#   - interface: org.example.Provider"},
		{args: []string{"-f", file, "--route-server-addr="}, note: true, inStdout: "aeraki-inbound-provider.ns.svc.cluster.local-20880"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"generate"}, c.args...), &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, stderr.String())
		}
		if got := strings.Contains(stderr.String(), "Service ns/provider port 20880 has no clusterIP"); got != c.note {
			t.Errorf("%v: note about the clusterIP %v, want %v; stderr:\n%s", c.args, got, c.note, stderr.String())
		}
		if !strings.Contains(stdout.String(), c.inStdout) {
			t.Errorf("%v: stdout lacks %q:\n%s", c.args, c.inStdout, stdout.String())
		}
	}
}

// Two ServiceEntries of the same workloads and port: one server-side EnvoyFilter,
// the older one's, and a note on the other.
func TestGenerateOneServerSide(t *testing.T) {
	file := write(t, t.TempDir(), "in.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z", annotations: {interface: org.example.Orders}}
spec:
  hosts: [orders.shop.example]
  addresses: [240.240.0.1]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  workloadSelector: {labels: {app: shop}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z", annotations: {interface: org.example.Billing}}
spec:
  hosts: [billing.shop.example]
  addresses: [240.240.0.2]
  ports: [{number: 20880, name: tcp-dubbo, protocol: TCP}]
  workloadSelector: {labels: {app: shop}}
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"generate", "-f", file, "--route-server-addr="}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	const older, younger = "aeraki-inbound-orders.shop.example-20880", "aeraki-inbound-billing.shop.example-20880"
	if !strings.Contains(stdout.String(), "name: "+older) || strings.Contains(stdout.String(), "name: "+younger) {
		t.Errorf("stdout: want %s and not %s:\n%s", older, younger, stdout.String())
	}
	if want := "note: EnvoyFilter shop/" + younger + " left out: shop/" + older; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
}

// With the mesh's default exportTo ".", a VirtualService without exportTo routes
// its own namespace's clients only: their filter is in that namespace.
func TestGenerateMeshConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	input := write(t, dir, "in.yaml", goodEntry+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-next, namespace: team}
spec:
  hosts: [good.example]
  http:
  - route: [{destination: {host: good.example, port: {number: 20881}}}]
`)
	private := write(t, dir, "mesh.yaml", "defaultVirtualServiceExportTo: [\".\"]\nsomeFieldOfANewerIstio: {x: 1}\n")
	notMesh := write(t, dir, "bad.yaml", "defaultVirtualServiceExportTo: 5\n")
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		inTeam   bool
		stderr   string
		emptyOut bool
	}{
		{name: "every namespace by default", args: []string{"-f", input}},
		{name: "own namespace by default", args: []string{"-f", input, "--mesh-config", private}, inTeam: true},
		{name: "not a mesh config", args: []string{"-f", input, "--mesh-config", notMesh}, code: 1, stderr: "bad.yaml: not a mesh config", emptyOut: true},
		{name: "missing", args: []string{"-f", input, "--mesh-config", filepath.Join(dir, "absent.yaml")}, code: 1, stderr: "absent.yaml", emptyOut: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"generate"}, c.args...), &stdout, &stderr); code != c.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr.String())
			}
			if c.emptyOut {
				if stdout.Len() > 0 {
					t.Errorf("stdout not empty:\n%s", stdout.String())
				}
				return
			}
			inTeam := strings.Contains(stdout.String(), "namespace: team") && strings.Contains(stdout.String(), "priority: -1")
			everyone := strings.Contains(stdout.String(), "cluster: outbound|20881||good.example") && !inTeam
			if inTeam != c.inTeam || (!c.inTeam && !everyone) {
				t.Errorf("the route to 20881: in namespace team %v, for every namespace %v; want in team %v:\n%s", inTeam, everyone, c.inTeam, stdout.String())
			}
		})
	}
}

// A ServiceEntry's status addresses, as Istio allocates them, are read from the file:
// the outbound filter goes on their listeners, and there is nothing to note.
func TestGenerateAutoAllocatedAddress(t *testing.T) {
	file := write(t, t.TempDir(), "se.yaml", fixture.DubboEntry("greeter", "org.example.Greeter", "")+`
status:
  conditions: [{type: Reconciled, status: "True", lastTransitionTime: "2026-11-30T10:00:00Z"}]
  addresses: [{value: 240.240.0.7, host: greeter.dubbo.example}]
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"generate", "-f", file, "--route-server-addr="}, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "name: 240.240.0.7_20880") {
		t.Errorf("no patch of the allocated address's listener:\n%s", stdout.String())
	}
}

// --istiod-version: a RedisDestination with maxConnections for an istiod before 1.31
// fails (that istiod cannot decode MERGE_AND_REPLACE_LIST) and says what it needs;
// without the flag the output is for the newest istiod.
func TestGenerateForAnIstiodVersion(t *testing.T) {
	in := write(t, t.TempDir(), "cache.yaml", fixture.ServiceEntryYAML("redis", "cache", "cache.redis.example", "240.240.30.1", "tcp-redis:6379")+
		fixture.RedisDestinationYAML("redis", "cache", "cache.redis.example", "{tcp: {maxConnections: 5}}"))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"generate", "-f", in}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "MERGE_AND_REPLACE_LIST") {
		t.Fatalf("newest istiod: exit %d, want 0 and MERGE_AND_REPLACE_LIST; stderr:\n%s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"generate", "--istiod-version=1.30.2", "-f", in}, &stdout, &stderr); code != 1 {
		t.Fatalf("istiod 1.30.2: exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "needs istiod 1.31 or later") || strings.Contains(stdout.String(), "MERGE_AND_REPLACE_LIST") {
		t.Errorf("istiod 1.30.2: stderr should say what maxConnections needs, and no MERGE_AND_REPLACE_LIST be printed:\n%s\n%s", stderr.String(), stdout.String())
	}
}
