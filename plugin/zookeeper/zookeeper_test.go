package zookeeper

import (
	"errors"
	"testing"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate/translatetest"
)

func TestGolden(t *testing.T) {
	for _, name := range []string{
		"service-entry",      // one VIP, workload selector: outbound and inbound, inserted before tcp_proxy
		"multi-vip",          // a patch per VIP listener, one stat prefix
		"no-selector",        // outbound only
		"kubernetes-service", // synthetic entry, cluster-local host, inbound on the target port
	} {
		t.Run(name, func(t *testing.T) { translatetest.Golden(t, New(), model.ZooKeeper, name) })
	}
}

// FuzzGenerate checks that any port, host and address either fails with an error or
// yields EnvoyFilters whose patch values Envoy accepts.
func FuzzGenerate(f *testing.F) {
	f.Add(uint32(2181), uint32(2181), "zookeeper.zk.example", "240.240.10.1", true)
	f.Add(uint32(2181), uint32(0), "zk.infra.svc.cluster.local", "10.96.0.30", true)
	f.Add(uint32(65535), uint32(1), "*.example", "", true)
	f.Add(uint32(0), uint32(0), "", "", false)
	f.Add(uint32(2181), uint32(2181), "ZK|.x..y", "10.0.0.0/8", false)
	f.Add(uint32(1), uint32(2), "\xff\x00zk", "2001:db8::1", true)
	f.Fuzz(func(t *testing.T, number, target uint32, host, address string, selector bool) {
		generatortest.SkipInvalidUTF8(t, host, address)
		svc := &model.Service{Name: "zk", Namespace: "zk", Hosts: []string{host}}
		if address != "" {
			svc.Addresses = []string{address}
		}
		if selector {
			svc.WorkloadSelector = map[string]string{"app": "zk"}
		}
		port := &model.Port{Number: number, Name: "tcp-zookeeper", Protocol: model.ZooKeeper, TargetPort: target}
		efs, err := New().Generate(generatortest.Context, svc, port)
		var skip *generator.SkipError
		if errors.As(err, &skip) {
			t.Fatalf("ZooKeeper never skips, got %v", err)
		}
		generatortest.CheckResult(t, efs, err)
	})
}
