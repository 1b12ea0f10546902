package redisspec

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a Go duration such as "1.5s" or "1m30s" (a positive number and a unit
// per part: ns, us, ms, s, m, h), written as a string as metav1.Duration is. Every
// field of this type carries a pattern: a value the controller cannot read must be
// refused by the API server, or it would break reading every object of its kind.
//
// +kubebuilder:validation:Type=string
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"1.5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}
