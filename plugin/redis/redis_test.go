package redis

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate/translatetest"
)

// TestGolden: one feature per case. Services that exist only to be routed to have
// neither address nor workloads, so their golden entry is a one-line error.
func TestGolden(t *testing.T) {
	for _, name := range []string{
		"service-entry",          // one VIP, workload selector: outbound and inbound, default route and timeout
		"kubernetes-service",     // synthetic entry, inbound on the target port
		"two-redis-ports",        // a filter pair and a cluster patch per port, each to its own cluster
		"headless",               // a patch per ready endpoint of a headless Service
		"routes",                 // prefix routes in input order: short host, explicit port, the service itself
		"remove-prefix",          // remove_prefix
		"catch-all",              // a route without match replaces the catch-all
		"mirror",                 // mirrors: all, 12.5% read-excluded, 0.0001%; a mirror host's own port
		"faults",                 // DELAY with percentage and commands, ERROR for every command
		"settings",               // every setting; case-insensitive prefixes; inbound keeps timeout and stats
		"downstream-auth-plain",  // password and username clients give their sidecar
		"downstream-auth-secret", // the same from a Secret's default keys
		"destination-tcp",        // connect timeout, max connections (replacing Istio's thresholds), keepalive
		"keepalive-alone",        // an empty tcpKeepalive still turns keepalive on
		"upstream-auth",          // server auth: outbound cluster, inbound redis_proxy and inbound cluster
		"workload-entry-ports",   // server auth on each number WorkloadEntries serve the port on
		"username-key-default",   // default username key absent: password only
		"cluster-mode",           // Redis Cluster: REMOVE + ADD, seeds from the host; no inbound filter
		"cluster-mode-seeds",     // discovery endpoints; no address: an outbound EnvoyFilter of clusters only
		"two-redisservices",      // the first by namespace/name is in effect
		"missing-secret",         // error: SecretNotFound
		"missing-key",            // error: named password key absent
		"username-key-missing",   // error: named username key absent
		"unknown-route-host",     // error: route to a host that is no service
		"duplicate-prefix",       // error: same prefix ignoring case (caseInsensitive)
		"unreadable",             // error: a spec stored in a form this API cannot read
		// Aeraki's forms, and this API's earlier ones (see TestEarlierFormsMeanTheSame).
		"upstream-mirror-percentage", // a mirror's percentage as {value: n}
		"mirror-percentage-number",   // the same as a number
		"upstream-fault-percentage",  // a fault's percentage as {value: n}, its type DELAY when unset
		"fault-percentage-number",    // the same as a number, the type set
		"upstream-secret-fields",     // a Secret's keys as passwordField and usernameField
		"secret-keys",                // the same as passwordKey and usernameKey
	} {
		t.Run(name, func(t *testing.T) { translatetest.Golden(t, New(), model.Redis, name) })
	}
}

// TestEarlierFormsMeanTheSame: an object written in Aeraki's form and the same one in
// this API's earlier form make byte-identical output (their goldens, each checked
// against the generator by TestGolden, are equal).
func TestEarlierFormsMeanTheSame(t *testing.T) {
	for aeraki, earlier := range map[string]string{
		"upstream-mirror-percentage": "mirror-percentage-number",
		"upstream-fault-percentage":  "fault-percentage-number",
		"upstream-secret-fields":     "secret-keys",
	} {
		a, err := os.ReadFile(filepath.Join("testdata", aeraki+".golden.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("testdata", earlier+".golden.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ:\n%s", aeraki, earlier, cmp.Diff(string(a), string(b)))
		}
	}
}
