package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	tlsErr := &localError{reason: ReasonTLS, err: errors.New(`tls: failed to verify certificate: x509: certificate is valid for "a", not b`)}
	tokenErr := &localError{reason: ReasonToken, err: errors.New("reading the token: open /t: no such file or directory")}
	rootErr := &localError{reason: ReasonRootCert, err: errors.New("no PEM certificate in /r")}
	handshake := func(le *localError) error {
		// What gRPC makes of a failed handshake, on this stream and every new one
		// until it connects again.
		return status.Error(codes.Unavailable, fmt.Sprintf("connection error: desc = %q", "transport: authentication handshake failed: "+le.Error()))
	}
	for _, tc := range []struct {
		name   string
		err    error
		local  *localError
		reason string
		cause  string
	}{
		{"connection refused", status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\""),
			nil, ReasonUnreachable, "connection refused"},
		{"timeout", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), nil, ReasonUnreachable, "deadline"},
		{"stream lost", status.Error(codes.Unavailable, "error reading from server: EOF"), nil, ReasonUnreachable, "EOF"},
		{"not a gRPC error", errors.New("boom"), nil, ReasonUnreachable, "boom"},
		{"certificate of another root", handshake(tlsErr), tlsErr, ReasonTLS, "x509"},
		{"root file", handshake(rootErr), rootErr, ReasonRootCert, "no PEM certificate"},
		// gRPC's own code for credentials that fail is Unauthenticated.
		{"token file", status.Error(codes.Unauthenticated, "transport: per-RPC creds failed due to error: "+tokenErr.Error()),
			tokenErr, ReasonToken, "no such file"},
		{"token file, as our credentials report it", status.Error(codes.Unavailable, tokenErr.Error()), tokenErr, ReasonToken, "no such file"},
		{"token read before connecting", fmt.Errorf("identity: %w", tokenErr), nil, ReasonToken, "no such file"},
		// A failure recorded earlier does not explain a new, different one.
		{"unreachable after a tls failure", status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: connection refused\""),
			tlsErr, ReasonUnreachable, "connection refused"},
		{"token rejected", status.Error(codes.Unauthenticated, "authentication failure"), nil, ReasonUnauthenticated, "authentication failure"},
		{"token rejected after a token failure", status.Error(codes.Unauthenticated, "authentication failure"), tokenErr, ReasonUnauthenticated, "authentication failure"},
		{"plaintext refused", status.Error(codes.Unauthenticated, "the api generator requires an authenticated control-plane identity"),
			nil, ReasonUnauthenticated, "control-plane identity"},
		{"namespace refused", status.Error(codes.PermissionDenied, "the api generator is restricted to the control-plane (root) namespace"),
			nil, ReasonPermissionDenied, "root) namespace"},
		{"identity check", status.Error(codes.PermissionDenied, "authorization failed: no identities matched"), nil, ReasonPermissionDenied, "no identities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, cause := classify(tc.err, tc.local)
			if reason != tc.reason {
				t.Errorf("reason %s, want %s", reason, tc.reason)
			}
			if !strings.Contains(cause.Error(), tc.cause) {
				t.Errorf("cause %q, want it to contain %q", cause, tc.cause)
			}
			if strings.Contains(cause.Error(), "rpc error") {
				t.Errorf("cause %q keeps gRPC's wrapping", cause)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	secure := Options{Address: "istiod.istio-system.svc:15012", Security: Security{RootCertFile: "/r.pem", TokenFile: "/t"}}.withDefaults()
	plain := Options{Address: "localhost:15010", Security: Security{Plaintext: true}}.withDefaults()
	aeraki := identity{Namespace: "aeraki-system", ServiceAccount: "aeraki"}
	inRoot := identity{Namespace: "istio-system", ServiceAccount: "aeraki"}
	for _, tc := range []struct {
		name   string
		opts   Options
		reason string
		id     identity
		want   []string
	}{
		{"unreachable", secure, ReasonUnreachable, identity{}, []string{"istiod.istio-system.svc:15012"}},
		{"tls", secure, ReasonTLS, identity{}, []string{"/r.pem", `"istiod.istio-system.svc"`, "15012"}},
		{"root_cert", secure, ReasonRootCert, identity{}, []string{"/r.pem", "istio-ca-root-cert"}},
		{"token", secure, ReasonToken, identity{}, []string{"/t", "audience istio-ca"}},
		{"unauthenticated", secure, ReasonUnauthenticated, inRoot, []string{"/t", "audience istio-ca"}},
		{"unauthenticated plaintext", plain, ReasonUnauthenticated, identity{}, []string{"ENABLE_XDS_API_GENERATOR_AUTH=false"}},
		{"permission_denied elsewhere", secure, ReasonPermissionDenied, aeraki, []string{
			"aeraki-system/aeraki", "aeraki runs in namespace aeraki-system", "root namespace istio-system", "install aeraki into istio-system",
		}},
		{"permission_denied in the root namespace", secure, ReasonPermissionDenied, inRoot, []string{"istio-system/aeraki", "meshConfig.rootNamespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.opts.explain(tc.reason, errors.New("the cause"), tc.id).message()
			for _, w := range append(tc.want, "the cause") {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestBrokenConnection(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("handshake: %w", context.Canceled), true},
		{&x509.UnknownAuthorityError{}, false},
		{errors.New("tls: first record does not look like a TLS handshake"), false},
	} {
		if got := brokenConnection(tc.err); got != tc.want {
			t.Errorf("brokenConnection(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
