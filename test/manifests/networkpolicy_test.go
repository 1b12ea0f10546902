package manifests

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// wantEgress is every port aeraki's pod may connect to: istiod's xDS and CA port, the
// apiserver behind its Service (443) and on its own port (6443), and DNS.
var wantEgress = []string{"15012/TCP", "443/TCP", "6443/TCP", "53/UDP", "53/TCP"}

// TestNetworkPolicy reads the NetworkPolicy of k8s/aeraki.yaml as a network plugin
// would apply it to the Deployment's pod (no plugin enforces one here): it selects the
// pod; ingress admits every port the container serves (those of its address flags
// among them) and no other, the route server's from every namespace; egress allows
// exactly wantEgress, istiod's port only to istiod's pods in the namespace of
// --istiod-addr, the others to any address.
func TestNetworkPolicy(t *testing.T) {
	docs, err := readDocuments(installFile)
	if err != nil {
		t.Fatal(err)
	}
	checkNetworkPolicy(t, docs)
}

// checkNetworkPolicy checks the NetworkPolicy among docs as TestNetworkPolicy says.
func checkNetworkPolicy(t *testing.T, docs []document) {
	t.Helper()
	deploy := deploymentOf(t, docs)
	pod := deploy.Spec.Template
	ctr := pod.Spec.Containers[0]
	var policies []*networkingv1.NetworkPolicy
	for _, d := range docs {
		if d.obj.GetKind() != "NetworkPolicy" {
			continue
		}
		np := &networkingv1.NetworkPolicy{}
		fromUnstructured(t, d, np)
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if np.Namespace == deploy.Namespace && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			policies = append(policies, np)
		}
	}
	if len(policies) != 1 {
		t.Fatalf("%d NetworkPolicies select the pod labels %v in %s, want 1", len(policies), pod.Labels, deploy.Namespace)
	}
	np := policies[0]
	for _, pt := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
		if !slices.Contains(np.Spec.PolicyTypes, pt) {
			t.Errorf("policyTypes %v lack %s: that direction is not restricted", np.Spec.PolicyTypes, pt)
		}
	}

	// Ingress: every served port admitted, nothing else.
	served := map[string]corev1.ContainerPort{}
	for _, p := range ctr.Ports {
		served[portKey(p.ContainerPort, p.Protocol)] = p
	}
	for _, flag := range []string{"metrics-addr", "probe-addr", "route-server-addr"} {
		if _, ok := served[portKey(flagPort(t, ctr.Args, flag), "")]; !ok {
			t.Errorf("--%s serves port %d, which is no containerPort of %v", flag, flagPort(t, ctr.Args, flag), slices.Collect(maps.Keys(served)))
		}
	}
	// For each served port, whether some rule admits it, and from everywhere.
	admitted := map[string]bool{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d names no port: it admits every port", i)
		}
		everyone := admitsEveryNamespace(rule.From)
		for _, rp := range rule.Ports {
			matched := false
			for key, cp := range served {
				if policyPortMatches(rp, cp) {
					matched = true
					admitted[key] = admitted[key] || everyone
				}
			}
			if !matched {
				t.Errorf("ingress rule %d admits %s, which the container does not serve", i, policyPortString(rp))
			}
		}
	}
	for key, cp := range served {
		everyone, ok := admitted[key]
		switch {
		case !ok:
			t.Errorf("no ingress rule admits the container port %s (%s)", cp.Name, key)
		case cp.ContainerPort == flagPort(t, ctr.Args, "route-server-addr") && !everyone:
			t.Errorf("the route server's port %s is not open to every namespace: sidecars everywhere fetch routes from it", key)
		}
	}

	// Egress: exactly wantEgress.
	istiodAddr, ok := flagValue(ctr.Args, "istiod-addr")
	if !ok {
		istiodAddr = defaultIstiodAddr
	}
	istiodHost, istiodPort, err := net.SplitHostPort(istiodAddr)
	if err != nil {
		t.Fatal(err)
	}
	istiodNamespace := strings.Split(istiodHost, ".")[1]
	// istiod's Service of a revision is istiod-<revision>, and its pods carry the
	// label istio.io/rev=<revision> ("default" without one).
	revision := "default"
	if rev, ok := strings.CutPrefix(strings.Split(istiodHost, ".")[0], "istiod-"); ok {
		revision = rev
	}
	var got []string
	for i, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("egress rule %d names no port: it allows every port", i)
		}
		for _, rp := range rule.Ports {
			if rp.Port == nil || rp.Port.IntValue() == 0 || rp.EndPort != nil {
				t.Errorf("egress rule %d: port %s, want one port by number", i, policyPortString(rp))
				continue
			}
			key := portKey(int32(rp.Port.IntValue()), protocolOf(rp.Protocol))
			got = append(got, key)
			switch {
			case key == istiodPort+"/TCP":
				if !selectsIstiod(rule.To, istiodNamespace, revision) {
					t.Errorf("egress to istiod's port %s goes to %+v, want istiod's pods (app: istiod, revision %s) in %s", key, rule.To, revision, istiodNamespace)
				}
			case len(rule.To) > 0:
				t.Errorf("egress to %s is limited to %+v: the apiserver's and DNS's addresses are the cluster's own, want any", key, rule.To)
			}
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(wantEgress))
	if !slices.Equal(got, want) {
		t.Errorf("egress ports %v, want exactly %v", got, want)
	}
	if !slices.Contains(got, istiodPort+"/TCP") {
		t.Errorf("egress lacks istiod's port %s (--istiod-addr=%s)", istiodPort, istiodAddr)
	}
}

// admitsEveryNamespace: no peers (every source), or a peer of every namespace and pod.
func admitsEveryNamespace(from []networkingv1.NetworkPolicyPeer) bool {
	if len(from) == 0 {
		return true
	}
	return slices.ContainsFunc(from, func(p networkingv1.NetworkPolicyPeer) bool {
		everyPod := p.PodSelector == nil || (len(p.PodSelector.MatchLabels) == 0 && len(p.PodSelector.MatchExpressions) == 0)
		return p.IPBlock == nil && everyPod && p.NamespaceSelector != nil &&
			len(p.NamespaceSelector.MatchLabels) == 0 && len(p.NamespaceSelector.MatchExpressions) == 0
	})
}

// selectsIstiod: every peer is istiod's pods of the revision (labelled app: istiod,
// as every revision's are, and istio.io/rev) in the namespace named ns.
func selectsIstiod(to []networkingv1.NetworkPolicyPeer, ns, revision string) bool {
	if len(to) == 0 {
		return false
	}
	istiod := labels.Set{"app": "istiod", "istio.io/rev": revision}
	namespace := labels.Set{corev1.LabelMetadataName: ns}
	other := labels.Set{corev1.LabelMetadataName: "default"}
	for _, p := range to {
		if p.IPBlock != nil || p.PodSelector == nil || p.NamespaceSelector == nil {
			return false
		}
		pods, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		if err != nil || pods.Empty() || !pods.Matches(istiod) {
			return false
		}
		nss, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil || !nss.Matches(namespace) || nss.Matches(other) {
			return false
		}
	}
	return true
}

func protocolOf(p *corev1.Protocol) corev1.Protocol {
	if p == nil {
		return corev1.ProtocolTCP
	}
	return *p
}

func portKey(port int32, proto corev1.Protocol) string {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return strconv.Itoa(int(port)) + "/" + string(proto)
}

// policyPortMatches says whether a NetworkPolicy port admits a container port: by
// number (or range) or by the container port's name, and protocol.
func policyPortMatches(rp networkingv1.NetworkPolicyPort, cp corev1.ContainerPort) bool {
	if protocolOf(rp.Protocol) != containerProtocol(cp.Protocol) {
		return false
	}
	switch {
	case rp.Port == nil:
		return true
	case rp.Port.StrVal != "":
		return rp.Port.StrVal == cp.Name
	case rp.EndPort != nil:
		return cp.ContainerPort >= rp.Port.IntVal && cp.ContainerPort <= *rp.EndPort
	default:
		return cp.ContainerPort == rp.Port.IntVal
	}
}

func containerProtocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func policyPortString(rp networkingv1.NetworkPolicyPort) string {
	port := "every port"
	if rp.Port != nil {
		port = rp.Port.String()
	}
	if rp.EndPort != nil {
		port += fmt.Sprintf("-%d", *rp.EndPort)
	}
	return port + "/" + string(protocolOf(rp.Protocol))
}
