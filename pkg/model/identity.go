package model

// SPIFFEID is the mesh identity Istio's CA gives a ServiceAccount: what sidecars
// check on the other side of a mutual TLS connection.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}
