// Package rds serves named xDS resources, such as the Dubbo route configurations
// (type.googleapis.com/envoy.extensions.filters.network.dubbo_proxy.v3.MultipleRouteConfiguration)
// that our EnvoyFilters make sidecars fetch through dubbo_proxy's drds, over the
// aggregated discovery service (ADS, state of the world and delta) to the sidecars of
// the mesh.
//
// Every replica of the controller serves: a sidecar connects to whichever replica
// the Service sends it to, and each replica is fed by its own translation of the
// same inputs, so no leader is needed to answer and a replica going away only makes
// its sidecars reconnect elsewhere.
//
// Versions are derived from content, never from a counter: a resource's version is
// the SHA-256 of its deterministic protobuf encoding, and a type's version (the
// version_info of state-of-the-world responses) is the SHA-256 of its resources'
// names and versions. Replicas, or a restarted replica, that hold the same content
// announce the same version, so a sidecar that reconnects elsewhere is told nothing
// new. (Deterministic encoding is stable for one build of the protobuf library:
// during a rolling upgrade that changes it a version may change once for the same
// content, which costs a resend and nothing else.)
//
// Until the first Set of a type, requests for that type are held without an answer:
// answering before the controller has translated anything would tell a sidecar that
// (re)connects during a start-up that its routes are gone. After the first Set,
// the usual state-of-the-world rules of go-control-plane's snapshot cache apply: a
// response carries the requested resources that exist, a requested name that does
// not exist is simply absent (a response may carry no resource at all), and a
// resource removed by a later Set is absent from the next response: the protocol
// cannot say "deleted" for such types, Envoy keeps a resource until its listener
// stops naming it. Delta clients are told of removals explicitly.
//
// Clients must authenticate: Serve speaks TLS 1.2 or later only, with the server
// certificate from a callback (a mesh certificate that rotates), and accepts a
// client only if it presents a certificate that chains to the mesh root
// certificates (a PEM file read again at every handshake, so rotated roots are
// followed) and carries a SPIFFE ID, as every sidecar's Istio workload certificate
// does. Any identity of the mesh is accepted; it is logged and reported per stream.
package rds
