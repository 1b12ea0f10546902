package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/generator"
	"aeraki.io/aeraki/pkg/manifest"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/translate"
	"aeraki.io/aeraki/plugin"
	"aeraki.io/aeraki/plugin/kafka"
)

const kafkaFlagHelp = "give every tcp-kafka port Envoy's contrib kafka_broker filter, applied only to sidecars that declare a contrib proxy build (ISTIO_META_" + kafka.ContribMetadataKey + "=true; stock Istio sidecars lack the filter and keep plain TCP); a service can override with the annotation " + kafka.ContribAnnotation

// stringsFlag is a repeatable flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// generate runs translate alone on YAML files and prints the EnvoyFilters: the same
// code path as the controller, for previews and CI checks.
func generate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aeraki generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files stringsFlag
	fs.Var(&files, "f", "a YAML file or a directory of them (repeatable; multi-document files are fine)")
	root := fs.String("root-namespace", "istio-system", "Istio's root namespace, where outbound EnvoyFilters go")
	domain := fs.String("domain-suffix", "cluster.local", "the cluster's DNS domain, for short hosts")
	var plugins plugin.Options
	fs.BoolVar(&plugins.KafkaContribFilter, kafka.ContribFlag, false, kafkaFlagHelp)
	var ro bootstrap.RouteServerOptions
	routeServerFlags(fs, &ro)
	serviceAccount := fs.String("service-account", "aeraki", "the controller's ServiceAccount, in --root-namespace: the route server's identity")
	istiodVersion := fs.String("istiod-version", "", "generate for an istiod of this version, as istiod reports it (1.30.3); default the newest")
	meshFile := fs.String("mesh-config", "", "Istio's mesh config (YAML, the `mesh` key of istiod's ConfigMap): its default exportTo settings apply to objects without exportTo")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: aeraki generate -f FILE_OR_DIR [-f ...]\n\nPrints the EnvoyFilters for the ServiceEntries, VirtualServices and DestinationRules in the files.\nExit status: 0 all generated, 1 some object failed (the rest is printed), 2 usage error.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	files = append(files, fs.Args()...)
	if len(files) == 0 {
		fmt.Fprintln(stderr, "aeraki generate: no input: give -f FILE_OR_DIR")
		fs.Usage()
		return 2
	}
	objs, errs := manifest.ReadPaths(files)
	for _, err := range errs {
		fmt.Fprintf(stderr, "error: %v\n", err)
	}
	ctx := generator.Context{RootNamespace: *root, DomainSuffix: *domain, Istiod: model.NewIstiod(*istiodVersion)}
	if ro.Addr != "" {
		// As the controller installed in the root namespace serves them.
		ro.Host = cmp.Or(ro.Host, "aeraki."+*root+".svc."+*domain)
		ctx.RouteDiscovery = bootstrap.RouteDiscovery(ro, model.SPIFFEID(ro.TrustDomain, *root, *serviceAccount))
	}
	snap := objs.Snapshot(*domain)
	if *meshFile != "" {
		mesh, err := manifest.ReadMeshConfig(*meshFile)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		snap.ExportDefaults = model.ExportDefaultsOf(mesh)
	}
	t, err := translate.Translate(ctx, plugin.Registry(plugins), snap)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	for _, serr := range translate.SortedErrors(t.Failed) {
		fmt.Fprintf(stderr, "error: %s %s/%s: port %d (%s): %v\n", serr.Service.Kind(), serr.Service.Namespace,
			serr.Service.ObjectName(), serr.Port.Number, serr.Protocol, serr.Err)
	}
	noClusterIP := map[string]bool{}
	for _, svc := range objs.Services {
		if svc.Spec.ClusterIP == "" {
			noClusterIP[svc.Namespace+"/"+model.SyntheticPrefix+svc.Name] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(t.Skipped)) {
		for _, s := range t.Skipped[key] {
			if noClusterIP[key] && s.Err.Error() == translate.NoAddressReason {
				// A shared port shows its routes anyway; this one needs the address.
				fmt.Fprintf(stderr, "note: Service %s/%s port %d has no clusterIP in the file: its outbound EnvoyFilter needs the address the cluster assigns, so only the inbound side is shown\n",
					s.Service.Namespace, s.Service.ObjectName(), s.Port.Number)
				continue
			}
			fmt.Fprintf(stderr, "note: %s %s/%s: port %d (%s) left as plain TCP: %v\n", s.Service.Kind(), s.Service.Namespace,
				s.Service.ObjectName(), s.Port.Number, s.Protocol, s.Err)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(t.Duplicates)) {
		fmt.Fprintf(stderr, "note: EnvoyFilter %s left out: %s, of an older service of the same workloads, is the same and serves both\n",
			key, t.Duplicates[key])
	}
	if err := manifest.WriteEnvoyFilters(stdout, translate.SortedFilters(t.Filters)); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if err := manifest.WriteRouteConfigs(stdout, t.Routes); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if len(errs) > 0 || len(t.Failed) > 0 {
		return 1
	}
	return 0
}
