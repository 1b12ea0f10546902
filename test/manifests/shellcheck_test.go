package manifests

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// shellShebang matches the first line of a sh or bash script.
var shellShebang = regexp.MustCompile(`^#!\s*(/usr/bin/env\s+)?(/bin/|/usr/bin/)?(ba)?sh(\s|$)`)

// TestShellcheck runs shellcheck on every shell script of the repository: files named
// *.sh and files starting with a sh or bash shebang (such as .ci/run).
func TestShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed: apt-get install shellcheck (.ci/run installs it)")
	}
	var scripts []string
	err = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		script := filepath.Ext(path) == ".sh"
		if !script {
			if script, err = hasShellShebang(path); err != nil {
				return err
			}
		}
		if script {
			rel, err := filepath.Rel(repoRoot, path)
			scripts = append(scripts, rel)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{filepath.Join("hack", "testbin.sh"), filepath.Join(".ci", "run")} {
		if !slices.Contains(scripts, want) {
			t.Errorf("%s not found among the scripts %q", want, scripts)
		}
	}
	cmd := exec.Command(shellcheck, append([]string{"--"}, scripts...)...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck %q: %v\n%s", scripts, err, out)
	}
	t.Logf("shellcheck passed on %q", scripts)
}

func hasShellShebang(path string) (bool, error) {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 256)
	n, err := f.Read(head)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	first, _, _ := bytes.Cut(head[:n], []byte("\n"))
	return shellShebang.Match(first), nil
}
