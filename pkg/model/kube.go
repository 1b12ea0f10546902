package model

// Secret is what a translation reads of a Kubernetes Secret.
type Secret struct {
	Namespace, Name string
	// ResourceVersion is empty for Secrets read from files.
	ResourceVersion string
	// Data has the Secret's stringData folded in, as the API server stores it.
	Data map[string][]byte
	// Forbidden says the controller may not read Secrets of the namespace: nobody
	// granted it (see the ClusterRole aeraki-secret-reader). Data is then empty.
	Forbidden bool
}

// KubeService is what a translation reads of the Kubernetes Service behind a
// synthetic ServiceEntry: istiod's synthetic entries carry neither annotations nor
// target ports.
type KubeService struct {
	ResourceVersion string
	Annotations     map[string]string
	// TargetPorts maps each port of the Service to the port its pods listen on; 0
	// when the target port is named, so only the pods know the number.
	TargetPorts map[uint32]uint32
	// Endpoints are the ready addresses of a headless Service's endpoints, sorted:
	// istiod gives its clients an outbound listener <address>_<port> for each.
	// Empty for a Service with a cluster IP.
	Endpoints []string
}

// TargetPort is the port the pods listen on for a port of the Service: the port
// itself when the Service does not list it, 0 when only the pods know it.
func (k *KubeService) TargetPort(port uint32) uint32 {
	if target, ok := k.TargetPorts[port]; ok {
		return target
	}
	return port
}
