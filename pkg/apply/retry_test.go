package apply

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// A write the apiserver refuses for what it is (too large, invalid, forbidden) is
// not tried again on every push; a passing failure is.
func TestRetriable(t *testing.T) {
	gr := schema.GroupResource{Group: "networking.istio.io", Resource: "envoyfilters"}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"too large", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), false},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: gr.Group, Kind: "EnvoyFilter"}, "x", field.ErrorList{field.Invalid(field.NewPath("spec"), "", "bad")}), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), false},
		{"canceled", context.Canceled, false},
		{"no namespace", fmt.Errorf("%w: %w", errNoNamespace, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "gone")), false},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), true},
		{"timeout", apierrors.NewServerTimeout(gr, "create", 1), true},
	} {
		if got := retriable(c.err); got != c.want {
			t.Errorf("%s: retriable = %v, want %v", c.name, got, c.want)
		}
	}
}
