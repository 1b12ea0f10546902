package xds

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"istio.io/istio/pilot/pkg/features"
	istiomodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/security"
	"istio.io/istio/pkg/test"
)

const rootNS = "istio-system"

// TestSecureWatcherFollowsRotation: over TLS with a token, the watcher syncs; a new
// root certificate and a new token written between connections are the ones the next
// connection uses; a token that goes away is named on the next connection.
func TestSecureWatcherFollowsRotation(t *testing.T) {
	secureIstiodFeatures(t)
	env := newSecureEnv(t)
	caA, caB := meshcerttest.NewCA(t, "root A"), meshcerttest.NewCA(t, "root B")
	env.write(t, env.rootFile, caA.PEM())
	first := testToken(t, rootNS, "first", false)
	env.write(t, env.tokenFile, first)

	istiodA := startSecureIstiod(t, env.addr, istiodCert(t, caA), env.auth)
	w, stop := env.run(t, env.options())
	eventually(t, "sync over TLS", func() bool {
		return w.HasSynced() && w.Connected() && inSnapshot(w, gvk.ServiceEntry, "dubbo-a")
	})
	if got := env.auth.tokens(); !slices.Equal(got, []string{first}) {
		t.Errorf("istiod saw tokens %v, want the first one once", got)
	}

	// Both rotate; istiod restarts with a certificate of the new root.
	second := testToken(t, rootNS, "second", false)
	env.write(t, env.rootFile, caB.PEM())
	env.write(t, env.tokenFile, second)
	istiodA.stop()
	eventually(t, "disconnect", func() bool { return !w.Connected() })
	istiodB := startSecureIstiod(t, env.addr, istiodCert(t, caB), env.auth)
	eventually(t, "reconnect with the new root and token", func() bool { return w.Connected() && env.auth.last() == second })

	// The token goes away: the next connection says which file it needs.
	if err := os.Remove(env.tokenFile); err != nil {
		t.Fatal(err)
	}
	istiodB.stop()
	startSecureIstiod(t, env.addr, istiodCert(t, caB), env.auth)
	eventually(t, "the missing token reported", func() bool { r, _ := w.LastError(); return r == ReasonToken })
	if _, msg := w.LastError(); !strings.Contains(msg, env.tokenFile) {
		t.Errorf("LastError message %q does not name the token file", msg)
	}
	third := testToken(t, rootNS, "third", false)
	env.write(t, env.tokenFile, third)
	eventually(t, "reconnect once the token is back", func() bool { return w.Connected() && env.auth.last() == third })
	if r, msg := w.LastError(); r != "" {
		t.Errorf("LastError = %s, %q while connected", r, msg)
	}
	stop()
}

// TestSecureWatcherWrongRoot: istiod's certificate from another root is reason tls,
// logged once however often it is retried, and the right root written to the file
// is used by the next handshake, without a restart.
func TestSecureWatcherWrongRoot(t *testing.T) {
	secureIstiodFeatures(t)
	env := newSecureEnv(t)
	caA, caB := meshcerttest.NewCA(t, "root A"), meshcerttest.NewCA(t, "root B")
	env.write(t, env.rootFile, caB.PEM())
	env.write(t, env.tokenFile, testToken(t, rootNS, "t", false))
	startSecureIstiod(t, env.addr, istiodCert(t, caA), env.auth)
	opts := env.options()
	failures := &failureCounter{}
	opts.Observer = failures
	w, stop := env.run(t, opts)

	eventually(t, "three failed handshakes", func() bool { return failures.count(ReasonTLS) >= 3 })
	reason, msg := w.LastError()
	if reason != ReasonTLS || !strings.Contains(msg, env.rootFile) || !strings.Contains(msg, `"127.0.0.1"`) {
		t.Errorf("LastError = %s, %q; want tls naming the root file and the server name", reason, msg)
	}
	if n := env.logs.count(`"msg"="cannot connect to istiod"`, `"reason"="tls"`); n != 1 {
		t.Errorf("the tls failure was logged %d times, want once", n)
	}
	if len(env.auth.tokens()) != 0 {
		t.Error("the token was sent to an istiod whose certificate does not verify")
	}

	env.write(t, env.rootFile, caA.PEM())
	eventually(t, "connected with the corrected root", func() bool { return w.Connected() && w.HasSynced() })
	if r, _ := w.LastError(); r != "" {
		t.Errorf("LastError reason %s while connected", r)
	}
	stop()
}

// TestSecureWatcherServerName: istiod's certificate is checked for the server name,
// not for the address's host (here an IP its certificate also carries).
func TestSecureWatcherServerName(t *testing.T) {
	secureIstiodFeatures(t)
	ca := meshcerttest.NewCA(t, "root")
	for _, tc := range []struct {
		serverName string
		reason     string // "" means it connects
	}{
		{"istiod.istio-system.svc", ""},
		{"istiod.other.svc", ReasonTLS},
	} {
		t.Run(tc.serverName, func(t *testing.T) {
			env := newSecureEnv(t)
			env.write(t, env.rootFile, ca.PEM())
			env.write(t, env.tokenFile, testToken(t, rootNS, "t", false))
			startSecureIstiod(t, env.addr, istiodCert(t, ca), env.auth)
			opts := env.options()
			opts.Security.ServerName = tc.serverName
			w, stop := env.run(t, opts)
			eventually(t, "connected or failed", func() bool { r, _ := w.LastError(); return w.Connected() || r != "" })
			r, msg := w.LastError()
			if r != tc.reason {
				t.Errorf("LastError = %q, %q; want reason %q", r, msg, tc.reason)
			}
			if tc.reason != "" && !strings.Contains(msg, tc.serverName) {
				t.Errorf("LastError message %q does not name the server name", msg)
			}
			stop()
		})
	}
}

// TestSecureWatcherRefusals: what istiod refuses, and the node's declared identity.
func TestSecureWatcherRefusals(t *testing.T) {
	secureIstiodFeatures(t)
	ca := meshcerttest.NewCA(t, "root")
	for _, tc := range []struct {
		name     string
		ns       string
		rejected bool
		reason   string
		inMsg    []string
		inLog    string
	}{{
		// The node declares the token's namespace: istiod's identity check passes, and
		// the api generator refuses a namespace that is not the root one (had the node
		// declared istio-system, the identity check would refuse: "authorization failed").
		name: "token of another namespace", ns: "aeraki-system", reason: ReasonPermissionDenied,
		inMsg: []string{
			"aeraki runs in namespace aeraki-system", "install aeraki into istio-system",
			"restricted to the control-plane (root) namespace",
		},
		inLog: "aeraki runs in namespace aeraki-system but istiod serves its config only to its root namespace istio-system",
	}, {
		name: "token istiod rejects", ns: rootNS, rejected: true, reason: ReasonUnauthenticated,
		inMsg: []string{"rejected the token in", "istio-token", "authentication failure", "audience istio-ca"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			env := newSecureEnv(t)
			env.write(t, env.rootFile, ca.PEM())
			env.write(t, env.tokenFile, testToken(t, tc.ns, "t", tc.rejected))
			startSecureIstiod(t, env.addr, istiodCert(t, ca), env.auth)
			w, stop := env.run(t, env.options())
			eventually(t, "the refusal", func() bool { r, _ := w.LastError(); return r == tc.reason })
			_, msg := w.LastError()
			for _, s := range tc.inMsg {
				if !strings.Contains(msg, s) {
					t.Errorf("LastError message %q lacks %q", msg, s)
				}
			}
			if tc.inLog != "" && env.logs.count(tc.inLog) != 1 {
				t.Errorf("the log does not say once %q", tc.inLog)
			}
			if w.HasSynced() {
				t.Error("synced although istiod refused")
			}
			stop()
		})
	}
}

// TestSecureWatcherLocalFailures: failures found before istiod can answer.
func TestSecureWatcherLocalFailures(t *testing.T) {
	ca := meshcerttest.NewCA(t, "root")
	// Connections to it are accepted by the kernel and wait: enough to dial, and to
	// fail before the TLS handshake sends anything.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	for _, tc := range []struct {
		name        string
		addr        string // default: the silent listener
		root, token string // file contents; "" leaves the file out
		reason      string
		names       string // the message names the file: "root" or "token"
	}{
		{name: "no token file", root: string(ca.PEM()), reason: ReasonToken, names: "token"},
		{name: "not a ServiceAccount token", root: string(ca.PEM()), token: "not-a-jwt", reason: ReasonToken, names: "token"},
		{name: "no root file", token: testToken(t, rootNS, "t", false), reason: ReasonRootCert, names: "root"},
		{
			name: "no certificate in the root file", root: "garbage", token: testToken(t, rootNS, "t", false),
			reason: ReasonRootCert, names: "root",
		},
		{
			name: "nothing listening", addr: freeAddress(t), root: string(ca.PEM()), token: testToken(t, rootNS, "t", false),
			reason: ReasonUnreachable,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newSecureEnv(t)
			env.addr = cmp.Or(tc.addr, silent.Addr().String())
			if tc.root != "" {
				env.write(t, env.rootFile, []byte(tc.root))
			}
			if tc.token != "" {
				env.write(t, env.tokenFile, tc.token)
			}
			w, stop := env.run(t, env.options())
			eventually(t, "the failure", func() bool { r, _ := w.LastError(); return r != "" })
			reason, msg := w.LastError()
			if reason != tc.reason {
				t.Errorf("LastError reason %s, want %s (message %q)", reason, tc.reason, msg)
			}
			if file := map[string]string{"root": env.rootFile, "token": env.tokenFile}[tc.names]; !strings.Contains(msg, file) {
				t.Errorf("LastError message %q does not name %s", msg, file)
			}
			stop()
		})
	}
}

// The xDS node declares what the identity says: istiod refuses a verified identity
// whose namespace or service account differs from the node's.
func TestADSCConfigDeclaresTheIdentity(t *testing.T) {
	w := NewWatcher(Options{Address: "istiod:15012"}, nil)
	cfg := w.adscConfig(identity{Namespace: "aeraki-system", ServiceAccount: "aeraki"})
	meta, err := istiomodel.ParseMetadata(cfg.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "aeraki-system" || meta.Namespace != "aeraki-system" || meta.ServiceAccount != "aeraki" || meta.Generator != "api" {
		t.Errorf("node namespace %q, metadata namespace %q, service account %q, generator %q",
			cfg.Namespace, meta.Namespace, meta.ServiceAccount, meta.Generator)
	}
}

func TestSecurityDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sec     Security
		address string
		want    Security
	}{
		{"secure", Security{}, "istiod.istio-system.svc:15012",
			Security{RootCertFile: DefaultRootCertFile, TokenFile: DefaultTokenFile, ServerName: "istiod.istio-system.svc"}},
		{"server name given", Security{ServerName: "istiod.x.svc", TokenFile: "/t"}, "10.0.0.1:15012",
			Security{RootCertFile: DefaultRootCertFile, TokenFile: "/t", ServerName: "istiod.x.svc"}},
		{"address without port", Security{}, "istiod", Security{RootCertFile: DefaultRootCertFile, TokenFile: DefaultTokenFile, ServerName: "istiod"}},
		{"plaintext", Security{Plaintext: true}, "localhost:15010", Security{Plaintext: true}},
	} {
		if got := tc.sec.withDefaults(tc.address); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// The token is read for every stream, so the kubelet's rewrite is the next one sent;
// a missing file is reason token, not gRPC's Unauthenticated.
func TestTokenCredentials(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	var noted []string
	creds := tokenCredentials{file: file, note: func(reason string, err error) error {
		noted = append(noted, reason)
		return &localError{reason: reason, err: err}
	}}
	if !creds.RequireTransportSecurity() {
		t.Error("a token may travel in plaintext")
	}
	for _, token := range []string{"first", "second"} {
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		md, err := creds.GetRequestMetadata(context.Background())
		if err != nil || md["authorization"] != "Bearer "+token {
			t.Errorf("metadata %v, %v; want Bearer %s", md, err, token)
		}
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	_, err := creds.GetRequestMetadata(context.Background())
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), file) {
		t.Errorf("missing file: %v; want Unavailable naming %s", err, file)
	}
	if len(noted) != 1 || noted[0] != ReasonToken {
		t.Errorf("noted %v, want one token failure", noted)
	}
}

// secureIstiodFeatures makes the in-process istiod check identities as a stock
// Istio 1.31 does on its TLS port. TLS is terminated by the test's listener (the fake
// server builds its own gRPC server, without credentials), so istiod must be told to
// authenticate such connections too (XDS_AUTH_PLAINTEXT). Read when servers are built.
func secureIstiodFeatures(t *testing.T) {
	test.SetForTest(t, &features.EnableXDSAPIGeneratorAuth, true)
	test.SetForTest(t, &security.AuthPlaintext, true)
}

// startSecureIstiod starts istiod with ServiceEntry dubbo-a on addr behind TLS with
// cert, authenticating tokens with auth in place of its TokenReview.
func startSecureIstiod(t *testing.T, addr string, cert tls.Certificate, auth *fakeAuthenticator) *fakeIstiod {
	t.Helper()
	gate := make(chan struct{})
	f := startIstiodOn(t, func() (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
		return gatedListener{Listener: tls.NewListener(l, cfg), gate: gate}, nil
	}, seDubboA)
	// Set before the first connection is accepted: the gate orders the two.
	f.server.Discovery.Authenticators = []security.Authenticator{auth}
	close(gate)
	return f
}

// gatedListener accepts nothing until gate is closed.
type gatedListener struct {
	net.Listener
	gate chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	<-l.gate
	return l.Listener.Accept()
}

// fakeAuthenticator stands for istiod's TokenReview of a Kubernetes token: it
// records each token and maps it to the SPIFFE identity of its claims, refusing a
// token that says it is expired.
type fakeAuthenticator struct {
	mu   sync.Mutex
	seen []string
}

func (a *fakeAuthenticator) AuthenticatorType() string { return "FakeTokenReview" }

func (a *fakeAuthenticator) Authenticate(ctx security.AuthContext) (*security.Caller, error) {
	token, err := security.ExtractBearerToken(ctx.GrpcContext)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.seen = append(a.seen, token)
	a.mu.Unlock()
	var claims testClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, err
	}
	if claims.Expired {
		return nil, errors.New("token expired")
	}
	ns, sa, _ := strings.Cut(strings.TrimPrefix(claims.Sub, "system:serviceaccount:"), ":")
	return &security.Caller{
		AuthSource: security.AuthSourceIDToken,
		Identities: []string{fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa)},
	}, nil
}

func (a *fakeAuthenticator) tokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

func (a *fakeAuthenticator) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return ""
	}
	return a.seen[len(a.seen)-1]
}

type testClaims struct {
	Sub     string `json:"sub"`
	ID      string `json:"jti"`
	Expired bool   `json:"test_expired,omitempty"`
}

// testToken is an unsigned JWT shaped like a projected ServiceAccount token of the
// service account aeraki in ns.
func testToken(t *testing.T, ns, id string, expired bool) string {
	const sa = "aeraki"
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	claims := map[string]any{
		"sub": "system:serviceaccount:" + ns + ":" + sa, "jti": id, "aud": []string{"istio-ca"},
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]string{"name": sa}},
	}
	if expired {
		claims["test_expired"] = true
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims) + ".c2lnbmF0dXJl"
}

// secureEnv holds one secure watcher's files, address, istiod authenticator and log.
type secureEnv struct {
	dir, rootFile, tokenFile string
	addr                     string
	auth                     *fakeAuthenticator
	logs                     *logBuffer
}

func newSecureEnv(t *testing.T) *secureEnv {
	t.Helper()
	dir := t.TempDir()
	e := &secureEnv{
		dir: dir, rootFile: filepath.Join(dir, "root-cert.pem"), tokenFile: filepath.Join(dir, "istio-token"),
		addr: freeAddress(t), auth: &fakeAuthenticator{}, logs: &logBuffer{},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("watcher log:\n" + e.logs.String())
		}
	})
	return e
}

func (e *secureEnv) options() Options {
	return Options{
		Address:        e.addr,
		Security:       Security{RootCertFile: e.rootFile, TokenFile: e.tokenFile},
		InitialBackoff: 20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Logger:         e.logs.logger(),
	}
}

// write replaces a file at once, as the kubelet does (a reader never sees half).
func (e *secureEnv) write(t *testing.T, file string, data any) {
	t.Helper()
	tmp, err := os.CreateTemp(e.dir, ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(tmp, "%s", data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		t.Fatal(err)
	}
}

// run runs a watcher until stop, which the test's cleanup calls too (istiods started
// later stop first then, which the watcher survives).
func (e *secureEnv) run(t *testing.T, opts Options) (*Watcher, func()) {
	t.Helper()
	w := NewWatcher(opts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// failureCounter counts the failures observed by reason.
type failureCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *failureCounter) ObserveConnection(bool, bool) {}

func (c *failureCounter) ObserveConnectionFailure(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason]++
}

func (c *failureCounter) count(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

// istiodCert returns a serving certificate for istiod's names and 127.0.0.1, signed
// by ca.
func istiodCert(t *testing.T, ca *meshcerttest.CA) tls.Certificate {
	t.Helper()
	return *ca.Issue(t, meshcerttest.Leaf{
		DNS:   []string{"istiod.istio-system.svc"},
		IPs:   []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: x509.ExtKeyUsageServerAuth,
	})
}
