package redis

import (
	"testing"

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
	} {
		t.Run(name, func(t *testing.T) { translatetest.Golden(t, New(), model.Redis, name) })
	}
}
