// Command aeraki runs the controller that keeps Istio EnvoyFilters for Dubbo (and other
// non-HTTP protocols) in step with the mesh config; with `generate`, prints the
// EnvoyFilters for YAML files without a cluster; with `status`, prints what a running
// controller wrote and what the proxies make of it.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `Usage:
  aeraki [flags]                        run the controller
  aeraki generate -f FILE_OR_DIR...     print the EnvoyFilters for YAML files, no cluster needed
  aeraki status [--addr URL]            print a running controller's EnvoyFilters and the proxies' verdicts

Run "aeraki -h", "aeraki generate -h" or "aeraki status -h" for the flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the exit code: 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "generate":
			return generate(args[1:], stdout, stderr)
		case "status":
			return status(args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	return serve(args, stderr)
}
