// Package manifests holds the demo manifests to the sample binaries: every container
// of the demo that runs one of them must pass flags the binary accepts.
package manifests

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// demoDir is the repository's demo folder, from this package's directory.
const demoDir = "../../.."

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
}

type workload struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// envRef is Kubernetes' $(VAR) expansion in args; any value will do for parsing.
var envRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

func TestDemoArgsParse(t *testing.T) {
	binaries, err := filepath.Glob("../../cmd/*")
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]bool{}
	for _, b := range binaries {
		ours[filepath.Base(b)] = true
	}
	files, err := filepath.Glob(filepath.Join(demoDir, "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type use struct {
		where, binary string
		args          []string
	}
	var uses []use
	for _, f := range files {
		if strings.Contains(f, string(filepath.Separator)+"apps"+string(filepath.Separator)) {
			continue
		}
		data, err := os.ReadFile(f) //nolint:gosec // the repository's own demo files
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var w workload
			if err := dec.Decode(&w); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, c := range w.Spec.Template.Spec.Containers {
				if len(c.Command) == 0 || !ours[c.Command[0]] {
					continue
				}
				args := slices.Clone(c.Args)
				for i := range args {
					args[i] = envRef.ReplaceAllString(args[i], "x")
				}
				uses = append(uses, use{where: f + ": " + w.Kind + " " + w.Metadata.Name + "/" + c.Name, binary: c.Command[0], args: args})
			}
		}
	}
	if len(uses) == 0 {
		t.Fatal("no demo container runs a sample binary: the manifests or this test moved")
	}
	bin := t.TempDir()
	built := map[string]bool{}
	for _, u := range uses {
		if !built[u.binary] {
			cmd := exec.Command("go", "build", "-o", filepath.Join(bin, u.binary), "./cmd/"+u.binary) //nolint:gosec // our own packages
			cmd.Dir = "../.."
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("building %s: %v\n%s", u.binary, err, out)
			}
			built[u.binary] = true
		}
		// -h after valid flags prints the usage and exits 0; an unknown or malformed
		// flag before it exits 2.
		cmd := exec.Command(filepath.Join(bin, u.binary), append(u.args, "-h")...) //nolint:gosec // built above
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %s %v: %v\n%s", u.where, u.binary, u.args, err, out)
		}
	}
}
