// Package translatetest runs the generators' golden tests through the
// translation, so that the golden files show what a push writes.
package translatetest

import (
	"testing"

	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
)

// Golden is generatortest.Golden with the filters the translation leaves out
// (translate.Translation.Duplicates) shown as notes. It is apart from generatortest,
// which translate's own tests use.
func Golden(t *testing.T, gen generator.Generator, p model.Protocol, name string) {
	t.Helper()
	generatortest.Golden(t, gen, p, name, func(snap *model.Snapshot) map[string]string {
		tr, err := translate.Translate(*generatortest.Context, generator.Registry{p: gen}, snap)
		if err != nil {
			t.Fatalf("translating: %v", err)
		}
		return tr.Duplicates
	})
}
