package rds

import (
	"os"
	"path/filepath"
	"testing"

	"aeraki.io/aeraki/pkg/meshcert/meshcerttest"
)

// writeRoots writes PEM roots to file the way a kubelet updates a ConfigMap
// volume: a new file renamed over the old one.
func writeRoots(t *testing.T, file string, cas ...*meshcerttest.CA) {
	t.Helper()
	var data []byte
	for _, ca := range cas {
		data = append(data, ca.PEM()...)
	}
	tmp := filepath.Join(filepath.Dir(file), ".roots.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}
