// Command renderchart writes the install manifest k8s/aeraki.yaml: the Helm chart
// k8s/chart rendered with its default values (`make generate` runs it from the
// repository root).
package main

import (
	"fmt"
	"os"

	"aeraki.io/aeraki/pkg/chart"
)

func main() {
	data, err := chart.InstallManifest(chart.Dir)
	if err == nil {
		err = os.WriteFile(chart.InstallFile, data, 0o644) //nolint:gosec // a manifest in the repository, read by everyone
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "renderchart: %v\n", err)
		os.Exit(1)
	}
}
