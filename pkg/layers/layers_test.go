package layers_test

import (
	"os/exec"
	"strings"
	"testing"
)

// pure are the packages that must not reach a cluster or istiod.
var pure = []string{
	"aeraki.io/aeraki/pkg/model",
	"aeraki.io/aeraki/pkg/generator",
	"aeraki.io/aeraki/pkg/patch",
	"aeraki.io/aeraki/plugin/...",
	"aeraki.io/aeraki/pkg/translate",
	"aeraki.io/aeraki/pkg/plan",
	"aeraki.io/aeraki/pkg/feedback",
}

// forbidden are the module paths of clients and servers, of metrics, of Helm and of
// Kubernetes' object types: the pure packages read the model's views of Secrets,
// Services and Redis objects (see package kubeobj), which keeps them small to build.
var forbidden = []string{
	"sigs.k8s.io/controller-runtime",
	"k8s.io/client-go",
	"k8s.io/api/",
	"k8s.io/apimachinery/",
	"github.com/prometheus/",
	"google.golang.org/grpc",
	"helm.sh/",
}

func TestPurePackagesImportNoClient(t *testing.T) {
	for _, pkg := range pure {
		// Each package's own dependencies, with the package that imports each one.
		out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			importer := fields[0]
			for _, imported := range fields[1:] {
				for _, f := range forbidden {
					if strings.HasPrefix(imported, f) && !forbiddenPrefix(importer) {
						t.Errorf("%s depends on %s: %s imports it", pkg, f, importer)
					}
				}
			}
		}
	}
}

// forbiddenPrefix reports whether pkg is itself forbidden: only the first step into
// a forbidden module is reported.
func forbiddenPrefix(pkg string) bool {
	for _, f := range forbidden {
		if strings.HasPrefix(pkg, f) {
			return true
		}
	}
	return false
}
