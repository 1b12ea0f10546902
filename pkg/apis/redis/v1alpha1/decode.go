package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"

	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
)

// stored is one of our objects as the API server keeps it, its spec and status not
// yet read.
type stored struct {
	metav1.TypeMeta `json:",inline"`
	ObjectMeta      metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec            json.RawMessage   `json:"spec"`
	Status          json.RawMessage   `json:"status,omitempty"`
}

// read decodes an object's metadata, then its spec into spec and its status into
// status. Metadata must be readable: the API server wrote it. A spec this API cannot
// read (stored in another form, under another schema) is returned as specErr, not
// as an error: one such object must not fail the list, and so the informer, of
// every object of its kind. A status that cannot be read is dropped: the
// controller writes it anew.
func (s *stored) read(b []byte, spec any, status *Status) (specErr, err error) {
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(b, s); err != nil {
		return nil, err
	}
	if len(s.Spec) > 0 {
		specErr = sigsjson.UnmarshalCaseSensitivePreserveInts(s.Spec, spec)
	}
	if len(s.Status) > 0 && sigsjson.UnmarshalCaseSensitivePreserveInts(s.Status, status) != nil {
		*status = Status{}
	}
	return specErr, nil
}

// readObject reads b into an object's parts; a spec it cannot read becomes
// unreadable(the stored spec, why).
func readObject[S any](b []byte, tm *metav1.TypeMeta, om *metav1.ObjectMeta, spec *S, status *Status, unreadable func([]byte, error) S) error {
	var s stored
	specErr, err := s.read(b, spec, status)
	if err != nil {
		return err
	}
	*tm, *om = s.TypeMeta, s.ObjectMeta
	if specErr != nil {
		*spec = unreadable(s.Spec, specErr)
	}
	return nil
}

// UnmarshalJSON reads a RedisService; a spec it cannot read leaves the object with
// its hosts, where they can be read, and Spec.Unreadable saying why.
func (r *RedisService) UnmarshalJSON(b []byte) error {
	*r = RedisService{}
	return readObject(b, &r.TypeMeta, &r.ObjectMeta, &r.Spec, &r.Status, redisspec.UnreadableServiceSpec)
}

// UnmarshalJSON reads a RedisDestination; a spec it cannot read leaves the object
// with its host, where it can be read, and Spec.Unreadable saying why.
func (r *RedisDestination) UnmarshalJSON(b []byte) error {
	*r = RedisDestination{}
	return readObject(b, &r.TypeMeta, &r.ObjectMeta, &r.Spec, &r.Status, redisspec.UnreadableDestinationSpec)
}
