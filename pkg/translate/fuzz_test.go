package translate

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"aeraki.io/aeraki/pkg/generator/generatortest"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/plugin"
)

// FuzzTranslateYAML decodes whole YAML files, several services at once and the
// conflicts between them, and translates them as the controller does with a route
// server: nothing may panic, every EnvoyFilter must be valid and small enough to
// write, and a failure must name its service. The seeds are the golden inputs.
func FuzzTranslateYAML(f *testing.F) {
	seeds, _ := filepath.Glob("../../plugin/*/testdata/*.yaml")
	seeds = append(seeds, "testdata/shared.yaml")
	for _, s := range seeds {
		if filepath.Ext(filepath.Base(s[:len(s)-len(".yaml")])) == ".golden" {
			continue
		}
		data, err := os.ReadFile(s) //nolint:gosec // the repository's own test inputs
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	reg := plugin.Registry(plugin.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		objs := &manifest.Objects{}
		_ = objs.Decode(bytes.NewReader(data), "fuzz")
		tr, err := Translate(sharingContext, reg, objs.Snapshot(sharingContext.DomainSuffix))
		if err != nil {
			return // a failed read of the snapshot: none here, but not a crash either
		}
		filters := SortedFilters(tr.Filters)
		generatortest.Validate(t, filters)
		for _, ef := range filters {
			if err := ef.CheckSize(); err != nil {
				t.Error(err)
			}
		}
		for key, serr := range tr.Failed {
			if serr.Service == nil || serr.Service.Key() != key || serr.Err == nil || serr.Error() == "" {
				t.Errorf("failure %s says nothing of its service: %v", key, serr)
			}
		}
		for name, rc := range tr.Routes {
			if v, ok := rc.Config.(interface{ ValidateAll() error }); !ok || v.ValidateAll() != nil {
				t.Errorf("route configuration %s is not valid", name)
			}
		}
	})
}
