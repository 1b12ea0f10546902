package xds

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reasons a connection to istiod fails: the values of Watcher.LastError and of the
// connection failure metric's label. A small fixed set, never free text.
const (
	// ReasonUnreachable: no connection (refused, reset, timed out, name unknown).
	ReasonUnreachable = "unreachable"
	// ReasonTLS: istiod's certificate does not verify against the root certificate
	// for the server name, or the port does not speak TLS.
	ReasonTLS = "tls"
	// ReasonToken: the ServiceAccount token file is missing, unreadable or not a
	// ServiceAccount token.
	ReasonToken = "token"
	// ReasonUnauthenticated: istiod rejected the token (expired, wrong audience), or
	// refused a plaintext client without identity.
	ReasonUnauthenticated = "unauthenticated"
	// ReasonPermissionDenied: istiod refuses the identity, whose namespace is not its
	// root namespace.
	ReasonPermissionDenied = "permission_denied"
	// ReasonRootCert: the root certificate file is missing or holds no certificate.
	ReasonRootCert = "root_cert"
)

// FailureReasons returns every reason, for metrics that show each from the start.
func FailureReasons() []string {
	return []string{ReasonUnreachable, ReasonTLS, ReasonToken, ReasonUnauthenticated, ReasonPermissionDenied, ReasonRootCert}
}

// localError is a failure found on our side of a connection before istiod could
// answer: the root certificate or token file, or istiod's certificate.
type localError struct {
	reason string
	err    error
}

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// classify says why an attempt failed, and returns the error that says best what
// happened. local is the latest failure found on our side (nil if none): gRPC
// passes such a failure on only as text in an error with a code of its own choosing
// (a token it could not read is Unauthenticated to gRPC), and fails new streams
// with that same text until it connects again, so an error carrying local's text
// is local's. An error that did not go through gRPC can be a localError itself.
// Otherwise istiod's answer (or gRPC's, when istiod was not reached) decides.
func classify(err error, local *localError) (reason string, cause error) {
	if le := (*localError)(nil); errors.As(err, &le) {
		return le.reason, le.err
	}
	if local != nil && carries(err, local) {
		return local.reason, local.err
	}
	if s, ok := status.FromError(err); ok {
		// istiod's own words, without gRPC's wrapping.
		cause = errors.New(s.Message())
	} else {
		cause = err
	}
	switch status.Code(err) {
	case codes.Unauthenticated:
		return ReasonUnauthenticated, cause
	case codes.PermissionDenied:
		return ReasonPermissionDenied, cause
	default:
		return ReasonUnreachable, cause
	}
}

// carries reports whether err's text has local's in it, as is or as gRPC quotes the
// description of a connection error.
func carries(err error, local *localError) bool {
	text := local.Error()
	quoted := strconv.Quote(text)
	return strings.Contains(err.Error(), text) || strings.Contains(err.Error(), quoted[1:len(quoted)-1])
}

// explanation is a classified failure told to the user: what failed and what to do.
type explanation struct {
	cause   error
	problem string // what failed, naming the file, server name or namespace involved
	fix     string
}

// message is the whole story in one line, for /readyz.
func (e explanation) message() string {
	return fmt.Sprintf("%s: %v. %s", e.problem, e.cause, e.fix)
}

// explain says what a failure of the given reason means for this watcher's settings.
// id is the identity the watcher declares (zero before it is known, or in plaintext).
func (o Options) explain(reason string, cause error, id identity) explanation {
	e := explanation{cause: cause}
	sec := o.Security
	switch reason {
	case ReasonRootCert:
		e.problem = "cannot load the mesh root certificate from " + sec.RootCertFile
		e.fix = "Mount key root-cert.pem of the ConfigMap istio-ca-root-cert at that path (istiod writes the ConfigMap " +
			"into every namespace it manages)"
	case ReasonTLS:
		e.problem = fmt.Sprintf("istiod's certificate at %s does not verify against the root certificate in %s for server name %q",
			o.Address, sec.RootCertFile, sec.ServerName)
		e.fix = "The file must hold the mesh root that signed istiod's certificate, the server name must be one the " +
			"certificate carries (istiod.<namespace>.svc), and the address must be istiod's TLS port (15012)"
	case ReasonToken:
		e.problem = "cannot use the ServiceAccount token in " + sec.TokenFile
		e.fix = "Mount a projected ServiceAccount token with audience istio-ca at that path"
	case ReasonUnauthenticated:
		e.problem, e.fix = o.explainUnauthenticated()
	case ReasonPermissionDenied:
		e.problem, e.fix = o.explainPermissionDenied(id)
	default:
		e.problem = "cannot reach istiod at " + o.Address
		e.fix = "Check the address and that istiod runs; retrying with backoff"
	}
	return e
}

func (o Options) explainUnauthenticated() (problem, fix string) {
	if o.Security.Plaintext {
		return "istiod at " + o.Address + " refused the plaintext client without identity",
			"Over plaintext istiod (Istio 1.31+) serves the api generator only with ENABLE_XDS_API_GENERATOR_AUTH=false; " +
				"connect securely to its port 15012 instead"
	}
	return "istiod at " + o.Address + " rejected the token in " + o.Security.TokenFile,
		"The token must be a current projected ServiceAccount token with audience istio-ca (or what istiod's " +
			"TOKEN_AUDIENCES says): expired, or another audience?"
}

func (o Options) explainPermissionDenied(id identity) (problem, fix string) {
	problem = fmt.Sprintf("istiod at %s refuses its config to aeraki's identity %s", o.Address, id)
	if id.Namespace != "" && id.Namespace != o.Namespace {
		return problem, fmt.Sprintf("aeraki runs in namespace %s, but istiod serves its config only to its root namespace %s: "+
			"install aeraki into %s", id.Namespace, o.Namespace, o.Namespace)
	}
	return problem, fmt.Sprintf("istiod serves its config only to identities of its root namespace (meshConfig.rootNamespace), "+
		"and only to the namespace and service account the token carries: check that the root namespace is %s", o.Namespace)
}

// failureState is the current failure, kept until the stream is up again.
type failureState struct {
	mu      sync.Mutex
	reason  string
	message string
}

// set records a failure and reports whether its reason differs from the current one.
func (f *failureState) set(reason, message string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := f.reason != reason
	f.reason, f.message = reason, message
	return changed
}

func (f *failureState) clear() { f.set("", "") }

func (f *failureState) get() (reason, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason, f.message
}
