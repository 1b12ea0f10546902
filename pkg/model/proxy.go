package model

import "time"

// ProxySync is istiod's view of what its proxies accepted (what `istioctl
// proxy-status` shows), kept small: the proxies rejecting something in full, the
// others counted.
type ProxySync struct {
	// At is when istiod answered.
	At time.Time
	// Proxies counts the proxies istiod reported; InSync those whose last listeners
	// and clusters were all accepted (some may still be on their way).
	Proxies, InSync int
	// Rejecting are the proxies whose last listener or cluster update was rejected,
	// at most MaxRejectingProxies of them, by ID; Dropped counts the others.
	Rejecting []*ProxyStatus
	Dropped   int
}

// MaxRejectingProxies bounds ProxySync.Rejecting: a broken filter can reach every
// proxy of a large mesh, and a few examples per service tell as much as all.
const MaxRejectingProxies = 1000

// ProxyStatus is one proxy's rejections.
type ProxyStatus struct {
	// ID names the proxy as istiod and `istioctl proxy-status` do: <pod>.<namespace>.
	ID        string
	Namespace string
	// Listeners and Clusters are the error details of the rejected listener and
	// cluster updates ("" when accepted), as Envoy sent them; ListenersSent and
	// ClustersSent are when istiod last sent each (by istiod's clock).
	Listeners, Clusters         string
	ListenersSent, ClustersSent time.Time
}
