package crds

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestAerakiFieldsAccepted holds our Redis CRDs against Aeraki's: every field of
// Aeraki's redis.aeraki.io API (testdata/aeraki-fields.txt, written from its module
// by hack/aerakifields) is in ours, at the same path, of the same JSON type, and
// takes at least the enum values Aeraki's does. Fields beyond Aeraki's are ours to
// add.
func TestAerakiFieldsAccepted(t *testing.T) {
	want := aerakiFields(t)
	var ours []byte
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		ours = append(append(ours, b...), []byte("\n---\n")...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	have, err := SpecFields(ours, "redis.aeraki.io")
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Field{}
	for _, f := range have {
		byPath[f.Kind+" "+f.Path] = f
	}
	for _, w := range want {
		h, ok := byPath[w.Kind+" "+w.Path]
		switch {
		case !ok:
			t.Errorf("%s %s: missing here", w.Kind, w.Path)
		case h.Type != w.Type:
			t.Errorf("%s %s: %s here, %s in Aeraki's API", w.Kind, w.Path, h.Type, w.Type)
		case len(h.Enum) > 0:
			for _, e := range w.Enum {
				if !slices.Contains(h.Enum, e) {
					t.Errorf("%s %s: %s is not taken here (%v)", w.Kind, w.Path, e, h.Enum)
				}
			}
		}
	}
}

func aerakiFields(t *testing.T) []Field {
	t.Helper()
	data, err := os.ReadFile("testdata/aeraki-fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []Field
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f, err := ParseField(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	if len(out) < 50 {
		t.Fatalf("only %d fields in testdata/aeraki-fields.txt", len(out))
	}
	return out
}
