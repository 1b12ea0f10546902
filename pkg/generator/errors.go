package generator

import (
	"errors"

	"aeraki.io/aeraki/pkg/model"
)

// SkipError is returned by a generator that leaves a port to Istio as plain TCP on
// purpose (for example a filter the sidecars' proxy build lacks). The reason is told
// to the user once; nothing fails.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

// ErrInvalidFilter marks a generated filter or patch that Envoy would reject. Input
// checks must catch bad input before this: reaching it is a generator bug.
var ErrInvalidFilter = errors.New("generated filter is invalid")

// ObjectError is a generation failure caused by one object that configures the
// service (a RedisService, a RedisDestination), with the Reason that object's Ready
// condition reports. The translation reports it on that object. Its message never
// holds a credential.
type ObjectError struct {
	Ref    model.ObjectRef
	Reason string
	Err    error
}

func (e *ObjectError) Error() string {
	return e.Ref.String() + ": " + e.Err.Error()
}

func (e *ObjectError) Unwrap() error { return e.Err }

// ObjectErrors returns every ObjectError in err's tree (errors.Join and %w wrapping),
// in order.
func ObjectErrors(err error) []*ObjectError {
	var out []*ObjectError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) { //nolint:errorlint // walks the tree itself
		case nil:
		case *ObjectError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}
