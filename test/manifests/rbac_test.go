package manifests

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// access is what aeraki's ServiceAccount may do with one resource, and why the
// controller needs it. Every other verb is denied.
type access struct {
	group, resource, subresource string
	// name, when set, asks about one object by name (RBAC's resourceNames).
	name string
	// everywhere: in every namespace and cluster-wide (the ClusterRole);
	// own: additionally in aeraki's own namespace (the Role).
	everywhere, own []string
}

// wantAccess is the controller's needs, read off the code:
//   - the manager's informer cache (pkg/kube.NewManager, the Redis reconcilers, the
//     translation's source) lists and watches EnvoyFilters (ours, by label), Services,
//     RedisServices and RedisDestinations; it never gets one by name;
//   - the translation gets the Secrets Redis objects name, one at a time, where a
//     namespace granted it (TestSecretGrant);
//   - apply.Applier creates, reads one live (Get) before an update or after a
//     create conflict, updates (whole spec) and deletes EnvoyFilters;
//   - the Redis reconcilers write status with Status().Update;
//   - Events on users' objects go through events.k8s.io (create, patch for a series);
//   - the metrics server (pkg/kube, secure by default) creates a TokenReview and a
//     SubjectAccessReview for a scraper's request;
//   - leader election (client-go's Lease lock) gets, creates and updates its Lease,
//     releasing it with an update, and records a core/v1 Event on it, in aeraki's
//     namespace. That namespace is istio-system, where istiod keeps leader Leases of
//     its own: get and update are allowed on aeraki's Lease by name only (a create
//     carries no name to authorize).
//
// Istio's ServiceEntries, VirtualServices and DestinationRules come from istiod over
// xDS, not from the apiserver; only ServiceEntries' metadata and status addresses are
// watched there too, because istiod pushes no change of their annotations alone and
// sends no status.
var wantAccess = []access{
	{group: "networking.istio.io", resource: "envoyfilters", everywhere: []string{"get", "list", "watch", "create", "update", "delete"}},
	{resource: "services", everywhere: []string{"list", "watch"}},
	// The endpoints of headless Services, whose clients have a listener per endpoint.
	{group: "discovery.k8s.io", resource: "endpointslices", everywhere: []string{"list", "watch"}},
	{group: "networking.istio.io", resource: "serviceentries", everywhere: []string{"list", "watch"}},
	// Secrets: nothing until a namespace binds aeraki-secret-reader (TestSecretGrant).
	{resource: "secrets"},
	{group: "redis.aeraki.io", resource: "redisservices", everywhere: []string{"list", "watch"}},
	{group: "redis.aeraki.io", resource: "redisdestinations", everywhere: []string{"list", "watch"}},
	{group: "redis.aeraki.io", resource: "redisservices", subresource: "status", everywhere: []string{"update"}},
	{group: "redis.aeraki.io", resource: "redisdestinations", subresource: "status", everywhere: []string{"update"}},
	{group: "events.k8s.io", resource: "events", everywhere: []string{"create", "patch"}},
	// The metrics endpoint's authentication and authorization of scrapers
	// (controller-runtime's filters.WithAuthenticationAndAuthorization).
	{group: "authentication.k8s.io", resource: "tokenreviews", everywhere: []string{"create"}},
	{group: "authorization.k8s.io", resource: "subjectaccessreviews", everywhere: []string{"create"}},
	{resource: "events", own: []string{"create", "patch"}},
	{group: "coordination.k8s.io", resource: "leases", own: []string{"create"}},
	{group: "coordination.k8s.io", resource: "leases", name: defaultLeaseName, own: []string{"get", "create", "update"}},
	// istiod's own leader election (pilot/pkg/leaderelection): never touched.
	{group: "coordination.k8s.io", resource: "leases", name: "istio-namespace-controller-election", own: []string{"create"}},
	// Nothing at all:
	{resource: "configmaps"},
	{resource: "pods"},
	{resource: "namespaces"},
	{resource: "serviceaccounts"},
	{resource: "serviceaccounts", subresource: "token"},
	{resource: "services", subresource: "status"},
	{group: "networking.istio.io", resource: "virtualservices"},
	{group: "networking.istio.io", resource: "destinationrules"},
	{group: "networking.istio.io", resource: "envoyfilters", subresource: "status"},
	{group: "apps", resource: "deployments"},
	{group: "rbac.authorization.k8s.io", resource: "clusterroles"},
	{group: "rbac.authorization.k8s.io", resource: "rolebindings"},
	{group: "apiextensions.k8s.io", resource: "customresourcedefinitions"},
}

var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// TestRBACAllowsWhatTheControllerDoes installs k8s/aeraki.yaml, takes a token of
// aeraki's ServiceAccount (TokenRequest, as the kubelet would mount it) and asks the
// apiserver, with SelfSubjectAccessReviews as that account, every verb on every
// resource in wantAccess: in a user namespace, in aeraki's namespace and
// cluster-wide. Allowed must be exactly what wantAccess says. TestChart asks the same
// of the chart installed with other values.
func TestRBACAllowsWhatTheControllerDoes(t *testing.T) {
	checkRBAC(t, manifestInstall(t))
}

// checkRBAC installs in and checks that aeraki's ServiceAccount may do exactly what
// wantAccess says, in a user namespace, in aeraki's namespace and cluster-wide.
func checkRBAC(t *testing.T, in installation) {
	t.Helper()
	in.install(t)
	cfg := serviceAccountConfigFor(t, in.admin(t), in.namespace)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// The token really is the ServiceAccount's.
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:"+in.namespace+":aeraki"; got != want {
		t.Fatalf("authenticated as %q, want %q", got, want)
	}

	leaseID := leaderElectionID(in.deployment(t).Spec.Template.Spec.Containers[0].Args)
	namespaces := []string{"shop", in.namespace, ""}
	if in.namespace != installNamespace {
		namespaces = append(namespaces, installNamespace) // nothing of its own left there
	}
	for _, a := range wantAccess {
		if a.name == defaultLeaseName {
			a.name = leaseID
		}
		for _, ns := range namespaces {
			allowed := slices.Clone(a.everywhere)
			if ns == in.namespace {
				allowed = append(allowed, a.own...)
			}
			for _, verb := range allVerbs {
				got, err := can(ctx, cs, ns, verb, a)
				if err != nil {
					t.Fatal(err)
				}
				if want := slices.Contains(allowed, verb); got != want {
					t.Errorf("%s %s in %s: allowed %t, want %t", verb, a, where(ns), got, want)
				}
			}
		}
	}
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	if a.name != "" {
		r += " " + a.name
	}
	return r
}

func where(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return "namespace " + ns
}

func can(ctx context.Context, cs kubernetes.Interface, ns, verb string, a access) (bool, error) {
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Name: a.name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review %s %s: %w", verb, a, err)
	}
	return r.Status.Allowed, nil
}

// waitGranted waits until the client config cfg, aeraki's ServiceAccount's, has
// every access the manifest grants in a user namespace and in aeraki's own,
// namespace: the
// apiserver's RBAC authorizer learns of new bindings through an informer, so they take
// effect shortly after they are created.
func waitGranted(cfg *rest.Config, namespace string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var missing string
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, a := range wantAccess {
			if a.name != "" {
				continue // by name only; the same bindings grant the rest
			}
			for _, ns := range []string{"shop", namespace} {
				verbs := a.everywhere
				if ns == namespace {
					verbs = append(slices.Clone(verbs), a.own...)
				}
				for _, verb := range verbs {
					ok, err := can(ctx, cs, ns, verb, a)
					if err != nil || !ok {
						missing = fmt.Sprintf("%s %s in %s (%v)", verb, a, where(ns), err)
						return false, nil
					}
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the manifest's bindings took no effect: still not allowed %s: %w", missing, err)
	}
	return nil
}

// serviceAccountConfig returns a client config for envtest's apiserver that
// authenticates as aeraki's ServiceAccount (installAeraki first).
func serviceAccountConfig(t *testing.T) *rest.Config {
	t.Helper()
	return serviceAccountConfigFor(t, apiserver.RestConfig(t), installNamespace)
}

// serviceAccountConfigFor returns a client config that authenticates as aeraki's
// ServiceAccount in namespace with a token the apiserver of the admin config
// adminCfg issued for it, as the kubelet mounts one for the API (the manifest
// installed first).
func serviceAccountConfigFor(t *testing.T, adminCfg *rest.Config, namespace string) *rest.Config {
	t.Helper()
	admin, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tok, err := admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, "aeraki", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the ServiceAccount %s/aeraki: %v", namespace, err)
	}
	cfg := rest.AnonymousClientConfig(adminCfg)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

// TestSecretGrant: aeraki's ServiceAccount reads no Secret until a namespace binds it
// aeraki-secret-reader, as the README says; then it gets that namespace's Secrets by
// name, and still lists none and reads no other namespace's (istio-system's, with
// Istio's CA key, among them).
func TestSecretGrant(t *testing.T) {
	installAeraki(t)
	admin, _ := newClient(t, nil)
	cs, err := kubernetes.NewForConfig(serviceAccountConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, ns := range []string{"granted", "other"} {
		if err := ensureNamespace(ctx, admin, ns); err != nil {
			t.Fatal(err)
		}
		if err := admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "auth", Namespace: ns}, StringData: map[string]string{"password": "p"}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	get := func(ns string) error {
		_, err := cs.CoreV1().Secrets(ns).Get(ctx, "auth", metav1.GetOptions{})
		return err
	}
	if err := get("granted"); !apierrors.IsForbidden(err) {
		t.Fatalf("before the grant: %v, want forbidden", err)
	}
	// The README's grant.
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "aeraki-secret-reader", Namespace: "granted"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "aeraki-secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "aeraki", Namespace: installNamespace}},
	}
	if err := admin.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The apiserver's RBAC authorizer learns of the binding through its informer, so
	// the grant takes effect shortly after the create returns.
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		lastErr = get("granted")
		return lastErr == nil, nil
	}); err != nil {
		t.Errorf("after the grant: %v", lastErr)
	}
	for _, ns := range []string{"other", installNamespace} {
		if err := get(ns); !apierrors.IsForbidden(err) {
			t.Errorf("Secret of %s, which granted nothing: %v, want forbidden", ns, err)
		}
	}
	if _, err := cs.CoreV1().Secrets("granted").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing the granted namespace's Secrets: %v, want forbidden (get by name only)", err)
	}
}
