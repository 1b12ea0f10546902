package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"aeraki.io/aeraki/test/controlplane"
)

const (
	// metricsReader is the ClusterRole of k8s/aeraki.yaml a scraper is bound to.
	metricsReader = "aeraki-metrics-reader"
	// scrapersNS holds the scrapers' ServiceAccounts.
	scrapersNS = "monitoring"
)

// testMetricsAccess runs the binary as installed (metrics over HTTPS, authenticated
// and authorized by the apiserver) and scrapes it as the README says a Prometheus
// does: no token is 401; a ServiceAccount's token without the reader role is 403;
// once that ServiceAccount is bound to aeraki-metrics-reader, as the README's
// `kubectl create clusterrolebinding` binds it, its token gets the metrics.
func testMetricsAccess(t *testing.T, e *env, bin string) {
	ctx := t.Context()
	a := startAeraki(t, e, bin)
	createManifestClusterRole(t, e, metricsReader)
	token := func(sa string) string {
		t.Helper()
		tok, err := e.cp.ServiceAccountToken(ctx, scrapersNS, sa, controlplane.TokenOptions{Audiences: []string{controlplane.APIAudience}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	prometheus, stranger := token("prometheus"), token("stranger")
	istioCA, err := e.cp.ServiceAccountToken(ctx, scrapersNS, "prometheus", controlplane.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		who, token string
		want       int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a ServiceAccount without the reader role", stranger, http.StatusForbidden},
	} {
		code, body, err := a.GetMetrics(ctx, c.token)
		if err != nil || code != c.want {
			t.Errorf("/metrics with %s: %d %q %v; want %d", c.who, code, body, err, c.want)
		}
	}
	// A token the apiserver refuses: controller-runtime's filter answers 500, not 401,
	// when the TokenReview comes back with an error (as it does for these); what
	// matters is that no metrics go out.
	for who, tok := range map[string]string{"garbage": "not-a-token", "a token for istiod's audience": istioCA} {
		code, body, err := a.GetMetrics(ctx, tok)
		if err != nil || code == http.StatusOK || strings.Contains(body, "aeraki_") {
			t.Errorf("/metrics with %s: %d %v; want it refused\n%.200s", who, code, err, body)
		}
	}

	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: metricsReader},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReader},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: scrapersNS}},
	}
	if _, err := e.kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver's RBAC authorizer learns of the binding through an informer. Ask
	// it first: aeraki keeps a denial for 30 seconds, so scraping too early would wait
	// that out.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		review, err := e.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:                  "system:serviceaccount:" + scrapersNS + ":prometheus",
			Groups:                []string{"system:serviceaccounts", "system:serviceaccounts:" + scrapersNS, "system:authenticated"},
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
		}}, metav1.CreateOptions{})
		return err == nil && review.Status.Allowed, err
	})
	if err != nil {
		t.Fatalf("the binding to %s never took effect: %v", metricsReader, err)
	}
	var code int
	var body string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		code, body, err = a.GetMetrics(ctx, prometheus)
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("/metrics as the bound ServiceAccount: %d %q; want 200", code, body)
	}
	for _, want := range []string{"\naeraki_xds_connected 1\n", "\naeraki_pushes_total{"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics as the bound ServiceAccount lacks %q", strings.TrimSpace(want))
		}
	}
	// The binding is the bound ServiceAccount's only.
	if code, _, err := a.GetMetrics(ctx, stranger); err != nil || code != http.StatusForbidden {
		t.Errorf("/metrics with a ServiceAccount without the reader role, after the binding: %d %v; want 403", code, err)
	}
}

// createManifestClusterRole creates the ClusterRole name as k8s/aeraki.yaml defines it.
func createManifestClusterRole(t *testing.T, e *env, name string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "k8s", "aeraki.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			t.Fatalf("k8s/aeraki.yaml has no ClusterRole %s", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal(doc, &role); err != nil {
			t.Fatal(err)
		}
		if role.Kind != "ClusterRole" || role.Name != name {
			continue
		}
		if _, err := e.kube.RbacV1().ClusterRoles().Create(t.Context(), &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		return
	}
}
