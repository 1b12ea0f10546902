package main

import (
	"os"
	"path/filepath"
	"testing"
)

// A kubeconfig file must not bring client-go's default rate limit (5 requests a
// second) with it: the first push of a large mesh writes thousands of EnvoyFilters.
func TestRestConfigFromKubeconfigIsNotRateLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS >= 0 || cfg.RateLimiter != nil {
		t.Errorf("QPS %v, RateLimiter %v; want client-side rate limiting off (negative QPS)", cfg.QPS, cfg.RateLimiter)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Errorf("host %q: the kubeconfig was not read", cfg.Host)
	}
}
