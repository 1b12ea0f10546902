package plugin

import (
	"testing"

	"aeraki.io/aeraki/pkg/model"
)

func TestRegistry(t *testing.T) {
	reg := Registry(Options{})
	for p, gen := range reg {
		if !p.Supported() {
			t.Errorf("generator registered for %q, which no port name can declare", p)
		}
		if gen == nil {
			t.Errorf("nil generator for %q", p)
		}
	}
	// Redis has its own issue; every other protocol a port name can declare has one.
	for _, p := range []model.Protocol{model.Dubbo, model.Thrift, model.ZooKeeper, model.Kafka} {
		if reg[p] == nil {
			t.Errorf("no generator for %s", p)
		}
	}
}
