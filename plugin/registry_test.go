package plugin

import (
	"testing"

	"aeraki.io/aeraki/pkg/model"
)

func TestRegistry(t *testing.T) {
	reg := Registry()
	for p, gen := range reg {
		if !p.Supported() {
			t.Errorf("generator registered for %q, which no port name can declare", p)
		}
		if gen == nil {
			t.Errorf("nil generator for %q", p)
		}
	}
	if reg[model.Dubbo] == nil {
		t.Error("no Dubbo generator")
	}
}
