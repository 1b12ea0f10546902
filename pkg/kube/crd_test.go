package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
)

// TestCRDValidation holds the generated CRDs to their markers on a real apiserver:
// what the schema must refuse is refused with a message naming the field, and a full
// object is accepted.
func TestCRDValidation(t *testing.T) {
	c := adminClient(t, apiserver.RestConfig(t))
	ns := testNamespace(t, c, "crd-validation")
	cases := []struct {
		name string
		yaml string
		want string // part of the rejection; empty: accepted
	}{
		{"full RedisService", `
kind: RedisService
spec:
  host: [cache]
  settings: {opTimeout: 2s, readPolicy: PREFER_REPLICA, auth: {secret: {name: s}}}
  redis:
  - match: {key: {prefix: "a:", removePrefix: true}}
    route: {host: other, port: 6379}
    mirror: [{route: {host: third}, percentage: {value: 12.5}, excludeReadCommands: true}]
  faults: [{type: DELAY, delay: 10ms, percentage: {value: 1}, commands: [GET]}]`, ""},
		{"duration the controller cannot read", `{kind: RedisService, spec: {host: [a], settings: {opTimeout: 1d}}}`, "spec.settings.opTimeout"},
		{"negative duration", `{kind: RedisDestination, spec: {host: a, trafficPolicy: {connectionPool: {tcp: {connectTimeout: -1s}}}}}`, "connectTimeout"},
		{"no host", `{kind: RedisService, spec: {host: []}}`, "spec.host"},
		{"unknown read policy", `{kind: RedisService, spec: {host: [a], settings: {readPolicy: SLAVE}}}`, "spec.settings.readPolicy"},
		{"both secret and plain auth", `{kind: RedisService, spec: {host: [a], settings: {auth: {secret: {name: s}, plain: {password: p}}}}}`, "set exactly one of secret and plain"},
		{"neither secret nor plain", `{kind: RedisService, spec: {host: [a], settings: {auth: {}}}}`, "set exactly one of secret and plain"},
		// Aeraki's API: DELAY without delay delays by nothing; a fault's type is DELAY
		// when unset; Secret keys are passwordField and usernameField.
		{"delay fault without delay", `{kind: RedisService, spec: {host: [a], faults: [{type: DELAY}]}}`, ""},
		{"fault without type", `{kind: RedisService, spec: {host: [a], faults: [{delay: 1s}]}}`, ""},
		{"Secret key fields", `{kind: RedisService, spec: {host: [a], settings: {auth: {secret: {name: s, passwordField: pw, usernameField: u}}}}}`, ""},
		{"Secret key under both names", `{kind: RedisService, spec: {host: [a], settings: {auth: {secret: {name: s, passwordField: pw, passwordKey: pw}}}}}`, ""},
		{"two password keys", `{kind: RedisService, spec: {host: [a], settings: {auth: {secret: {name: s, passwordField: pw, passwordKey: other}}}}}`, "passwordField and passwordKey"},
		{"two username keys", `{kind: RedisService, spec: {host: [a], settings: {auth: {secret: {name: s, usernameField: u, usernameKey: other}}}}}`, "usernameField and usernameKey"},
		{"percentage over 100", `{kind: RedisService, spec: {host: [a], faults: [{type: ERROR, percentage: {value: 101}}]}}`, "percentage"},
		// The earlier form is decoded when stored, not taken any more.
		{"percentage as a number", `{kind: RedisService, spec: {host: [a], faults: [{type: ERROR, percentage: 50}]}}`, "percentage"},
		{"route port out of range", `{kind: RedisService, spec: {host: [a], redis: [{route: {host: b, port: 70000}}]}}`, "spec.redis[0].route.port"},
		{"empty prefix", `{kind: RedisService, spec: {host: [a], redis: [{match: {key: {prefix: ""}}, route: {host: b}}]}}`, "prefix"},
		{"full RedisDestination", `
kind: RedisDestination
spec:
  host: cache
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 1s, tcpKeepalive: {probes: 3, time: 60s, interval: 5s}}
      redis: {mode: CLUSTER, auth: {plain: {password: p}}, discoveryEndpoints: ["cache-0.cache:6379"]}`, ""},
		{"unknown mode", `{kind: RedisDestination, spec: {host: a, trafficPolicy: {connectionPool: {redis: {mode: SENTINEL}}}}}`, "mode"},
		{"zero max connections (Istio's default)", `{kind: RedisDestination, spec: {host: a, trafficPolicy: {connectionPool: {tcp: {maxConnections: 0}}}}}`, ""},
		{"negative max connections", `{kind: RedisDestination, spec: {host: a, trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}}}`, "maxConnections"},
		{"no destination host", `{kind: RedisDestination, spec: {}}`, "spec.host"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Unstructured: the API server must see what a user could send, including
			// values our own types could not even decode.
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tc.yaml), &obj.Object); err != nil {
				t.Fatal(err)
			}
			obj.SetAPIVersion(v1alpha1.GroupVersion.String())
			obj.SetName("case-" + string(rune('a'+i)))
			obj.SetNamespace(ns)
			err := c.Create(t.Context(), obj, client.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want a rejection about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("rejected for another reason: %v (want %q)", err, tc.want)
			}
		})
	}
}
