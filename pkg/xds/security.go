package xds

// Security says how the watcher and istiod prove who they are to each other.
//
// By default (Plaintext false) the watcher speaks TLS to istiod's secure xDS port
// (15012), verifies istiod's certificate against the mesh root certificate, and
// authenticates with the pod's own ServiceAccount token, as istio-agent does for every
// sidecar: istiod serves its config through the "api" generator only to identities of
// its root namespace.
type Security struct {
	// Plaintext connects without TLS and without an identity, to istiod's port 15010.
	// Only an istiod started with ENABLE_XDS_API_GENERATOR_AUTH=false (or older than
	// Istio 1.31) answers it: for local development.
	Plaintext bool
	// RootCertFile holds the PEM root certificate(s) istiod's serving certificate must
	// chain to: the mesh root certificate, key root-cert.pem of the ConfigMap
	// istio-ca-root-cert that Istio puts in every namespace. It is read again on every
	// connection, so a rotated root is picked up.
	RootCertFile string
	// ServerName is the name istiod's certificate must carry; empty means the host of
	// the address (istiod.istio-system.svc).
	ServerName string
	// TokenFile holds the ServiceAccount token sent as "authorization: Bearer": a
	// projected token with the audience istiod checks (istio-ca). It is read for every
	// connection, so the kubelet's rotation is followed.
	TokenFile string
}
