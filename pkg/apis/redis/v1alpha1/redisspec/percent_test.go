package redisspec

import (
	"encoding/json"
	"testing"
)

// TestPercentForms: Aeraki's {"value": n} and this API's earlier bare number read the
// same; anything else is an error, not a silent zero.
func TestPercentForms(t *testing.T) {
	for in, want := range map[string]float64{`{"value": 12.5}`: 12.5, `12.5`: 12.5, ` 7 `: 7, `{}`: 0, `{"value": 0}`: 0} {
		var p Percent
		if err := json.Unmarshal([]byte(in), &p); err != nil || p.Value != want {
			t.Errorf("%s: %v, %v; want %v", in, p.Value, err, want)
		}
	}
	for _, in := range []string{`"12.5"`, `{"value": "12.5"}`, `[12.5]`, `true`} {
		var p Percent
		if err := json.Unmarshal([]byte(in), &p); err == nil {
			t.Errorf("%s: read as %v, want an error", in, p.Value)
		}
	}
	// Written back, it takes Aeraki's form.
	b, err := json.Marshal(Percent{Value: 12.5})
	if err != nil || string(b) != `{"value":12.5}` {
		t.Errorf("marshalled %s, %v", b, err)
	}
}
