// Command aerakifields writes the field list of Aeraki's Redis API (the CRDs of
// github.com/aeraki-mesh/api at the version given), which k8s/crds' compatibility
// test holds our CRDs against:
//
//	go run ./hack/aerakifields v1.4.1 > k8s/crds/testdata/aeraki-fields.txt
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"

	"aeraki.io/aeraki/k8s/crds"
)

const module = "github.com/aeraki-mesh/api"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: aerakifields <version of "+module+">")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "aerakifields:", err)
		os.Exit(1)
	}
}

// release is the form of the versions this reads: a release tag.
var release = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

func run(version string) error {
	if !release.MatchString(version) {
		return fmt.Errorf("version %q is not a release tag such as v1.4.1", version)
	}
	out, err := exec.Command("go", "mod", "download", "-json", module+"@"+version).Output() //nolint:gosec // a release tag, checked above
	if err != nil {
		return fmt.Errorf("downloading %s@%s: %w", module, version, err)
	}
	var dl struct{ Dir string }
	if err := json.Unmarshal(out, &dl); err != nil {
		return fmt.Errorf("reading go mod download's answer: %w", err)
	}
	const file = "kubernetes/customresourcedefinitions.gen.yaml"
	data, err := os.ReadFile(filepath.Join(dl.Dir, file))
	if err != nil {
		return err
	}
	fields, err := crds.SpecFields(data, "redis.aeraki.io")
	if err != nil {
		return err
	}
	if len(fields) == 0 {
		return fmt.Errorf("no redis.aeraki.io CRD in %s", file)
	}
	fmt.Printf("# The spec fields of Aeraki's redis.aeraki.io CRDs (%s %s, %s),\n", module, version, file)
	fmt.Printf("# written by: go run ./hack/aerakifields %s\n", version)
	for _, f := range fields {
		fmt.Println(f)
	}
	return nil
}
