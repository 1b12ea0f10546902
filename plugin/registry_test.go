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
	for _, p := range model.Protocols {
		if reg[p] == nil {
			t.Errorf("no generator for %s", p)
		}
	}
}
