package redisspec

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Percent is a share of commands, written as Aeraki's and Istio's APIs write one:
// {"value": 12.5}.
type Percent struct {
	// Value from 0 to 100; fractions allowed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Value float64 `json:"value,omitempty"`
}

// UnmarshalJSON reads {"value": n}, and also a bare number, the form this API had
// before it took Aeraki's: objects stored then must keep decoding.
func (p *Percent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '{' {
		if err := json.Unmarshal(b, &p.Value); err != nil {
			return fmt.Errorf("a percentage is {\"value\": n} or a number: %w", err)
		}
		return nil
	}
	type plain Percent // without this method
	return json.Unmarshal(b, (*plain)(p))
}
