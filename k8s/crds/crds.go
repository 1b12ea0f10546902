// Package crds embeds the CustomResourceDefinitions of aeraki's own API (generated
// from pkg/apis by `make generate`), so that tests and tools install exactly these.
package crds

import "embed"

// FS holds one YAML file per CRD.
//
//go:embed *.yaml
var FS embed.FS
