// Package manifest reads Kubernetes YAML documents into translation inputs and writes
// EnvoyFilters as YAML: the file side of `aeraki generate` and of the golden tests.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/kube"
	"istio.io/istio/pkg/config/schema/gvk"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "aeraki.io/aeraki/pkg/apis/redis/v1alpha1"
	"aeraki.io/aeraki/pkg/apis/redis/v1alpha1/redisspec"
	"aeraki.io/aeraki/pkg/model"
	"aeraki.io/aeraki/pkg/model/kubeobj"
)

// Objects are the inputs read from documents, in the order read.
type Objects struct {
	ServiceEntries   []config.Config
	VirtualServices  []config.Config
	DestinationRules []config.Config
	WorkloadEntries  []config.Config
	// Services are Kubernetes Services; istiod shows each as a synthetic ServiceEntry.
	Services []*corev1.Service
	// EndpointSlices give a headless Service's endpoints.
	EndpointSlices    []discoveryv1.EndpointSlice
	RedisServices     []*redisv1alpha1.RedisService
	RedisDestinations []*redisv1alpha1.RedisDestination
	// Secrets hold the credentials RedisServices and RedisDestinations refer to.
	Secrets []*corev1.Secret
}

// Snapshot returns the translation input for the objects: Kubernetes Services become
// the synthetic ServiceEntries istiod would serve, completed from the Service as the
// controller does.
func (o *Objects) Snapshot(domainSuffix string) *model.Snapshot {
	ses := slices.Clone(o.ServiceEntries)
	byName := map[string]*model.KubeService{}
	for _, svc := range o.Services {
		ses = append(ses, SyntheticServiceEntry(svc, domainSuffix))
		ks := kubeobj.Service(svc)
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			ks.Endpoints = kubeobj.Endpoints(o.endpointSlicesOf(svc))
		}
		byName[svc.Namespace+"/"+svc.Name] = ks
	}
	// What the controller reads of a ServiceEntry from the apiserver, the files have.
	entries := map[string]*model.ServiceEntryState{}
	for _, c := range o.ServiceEntries {
		status, _ := c.Status.(*networking.ServiceEntryStatus)
		entries[c.Namespace+"/"+c.Name] = &model.ServiceEntryState{Annotations: c.Annotations, Labels: c.Labels, Addresses: model.StatusAddresses(status)}
	}
	secrets := map[string]*model.Secret{}
	for _, s := range o.Secrets {
		secrets[s.Namespace+"/"+s.Name] = kubeobj.Secret(s)
	}
	snap := &model.Snapshot{
		ServiceEntries:   objects(ses),
		VirtualServices:  objects(o.VirtualServices),
		DestinationRules: objects(o.DestinationRules),
		WorkloadEntries:  objects(o.WorkloadEntries),
		DomainSuffix:     domainSuffix,
		KubeService:      func(ns, name string) (*model.KubeService, error) { return byName[ns+"/"+name], nil },
		ServiceEntryState: func(ns, name string) (*model.ServiceEntryState, error) {
			return entries[ns+"/"+name], nil
		},
		Secret: func(ns, name string) (*model.Secret, error) { return secrets[ns+"/"+name], nil },
	}
	for _, rs := range o.RedisServices {
		snap.RedisServices = append(snap.RedisServices, kubeobj.RedisService(rs))
	}
	for _, rd := range o.RedisDestinations {
		snap.RedisDestinations = append(snap.RedisDestinations, kubeobj.RedisDestination(rd))
	}
	return snap
}

// endpointSlicesOf returns the EndpointSlices of a Service.
func (o *Objects) endpointSlicesOf(svc *corev1.Service) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, eps := range o.EndpointSlices {
		if eps.Namespace == svc.Namespace && eps.Labels[discoveryv1.LabelServiceName] == svc.Name {
			out = append(out, eps)
		}
	}
	return out
}

// document is the part of a Kubernetes object we read before knowing its kind.
type document struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
	// Status is read of ServiceEntries only: the addresses Istio allocated.
	Status json.RawMessage `json:"status"`
}

// istioKinds maps the Istio kinds we read to their spec type and Istio's config kind.
var istioKinds = map[string]struct {
	gvk  config.GroupVersionKind
	spec func() proto.Message
}{
	"ServiceEntry":    {gvk.ServiceEntry, func() proto.Message { return &networking.ServiceEntry{} }},
	"VirtualService":  {gvk.VirtualService, func() proto.Message { return &networking.VirtualService{} }},
	"DestinationRule": {gvk.DestinationRule, func() proto.Message { return &networking.DestinationRule{} }},
	"WorkloadEntry":   {gvk.WorkloadEntry, func() proto.Message { return &networking.WorkloadEntry{} }},
}

// ReadPaths reads every file named, and every .yaml, .yml and .json file under every
// directory named, in lexical order. Errors name the file and document; the objects
// that could be read are returned with them.
func ReadPaths(paths []string) (*Objects, []error) {
	objs := &Objects{}
	var errs []error
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := readFile(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, objs.Decode(bytes.NewReader(data), f)...)
		}
	}
	return objs, errs
}

// MaxFileSize is the largest file ReadPaths reads: far more than any config, and
// little enough to hold.
const MaxFileSize = 64 << 20

// readFile reads a regular file of at most MaxFileSize bytes (a symlink is followed
// to one): a device or a pipe would be read for ever.
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name) //nolint:gosec // reading the files the user names is the point
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file (%s): refused", name, info.Mode().Type())
	case info.Size() > MaxFileSize:
		return nil, fmt.Errorf("%s is %d bytes, more than the %d read: refused", name, info.Size(), MaxFileSize)
	}
	// The size can grow after Stat: read one byte more than allowed to notice.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is more than %d bytes: refused", name, MaxFileSize)
	}
	return data, nil
}

// ReadMeshConfig reads Istio's mesh config from a YAML file: what istiod reads with
// --meshConfig, the `mesh` key of its ConfigMap. Fields this Istio version does not
// know are ignored: a newer mesh has more.
func ReadMeshConfig(name string) (*meshconfig.MeshConfig, error) {
	data, err := readFile(name)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m := &meshconfig.MeshConfig{}
	if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
		return m, nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(js, m); err != nil {
		return nil, fmt.Errorf("%s: not a mesh config: %w", name, err)
	}
	return m, nil
}

func expand(p string) ([]string, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				files = append(files, path)
			}
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// Decode reads YAML or JSON documents (separated by ---) from r. Documents of kinds
// that do not feed a generator are skipped. A document that cannot be read is an
// error naming source, position and object; reading goes on with the next one.
func (o *Objects) Decode(r io.Reader, source string) []error {
	var errs []error
	reader := kubeyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return errs
		}
		if err != nil {
			return append(errs, fmt.Errorf("%s: document %d: %w", source, i, err))
		}
		if err := o.decodeDocument(raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", source, i, err))
		}
	}
}

func (o *Objects) decodeDocument(raw []byte) error {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
		return nil
	}
	var doc document
	if err := json.Unmarshal(js, &doc); err != nil {
		return err
	}
	gv, err := schema.ParseGroupVersion(doc.APIVersion)
	if err != nil {
		return err
	}
	ns := doc.Metadata.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	switch {
	case gv.Group == "" && doc.Kind == "Service":
		svc := &corev1.Service{}
		if err := json.Unmarshal(js, svc); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		svc.Namespace = ns
		o.Services = append(o.Services, svc)
		return nil
	case gv == discoveryv1.SchemeGroupVersion && doc.Kind == "EndpointSlice":
		eps := discoveryv1.EndpointSlice{}
		if err := json.Unmarshal(js, &eps); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		eps.Namespace = ns
		o.EndpointSlices = append(o.EndpointSlices, eps)
		return nil
	case gv.Group == "" && doc.Kind == "Secret":
		secret := &corev1.Secret{}
		if err := json.Unmarshal(js, secret); err != nil {
			// The error of a Secret may quote its data: say only where it is.
			return fmt.Errorf("%s %s/%s: not a valid Secret", doc.Kind, ns, doc.Metadata.Name)
		}
		secret.Namespace = ns
		o.Secrets = append(o.Secrets, secret)
		return nil
	case gv == redisv1alpha1.GroupVersion && doc.Kind == "RedisService":
		rs := &redisv1alpha1.RedisService{}
		if err := unknownSpecField(js, &redisspec.RedisServiceSpec{}); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		if err := json.Unmarshal(js, rs); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		rs.Namespace = ns
		o.RedisServices = append(o.RedisServices, rs)
		return nil
	case gv == redisv1alpha1.GroupVersion && doc.Kind == "RedisDestination":
		rd := &redisv1alpha1.RedisDestination{}
		if err := unknownSpecField(js, &redisspec.RedisDestinationSpec{}); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		if err := json.Unmarshal(js, rd); err != nil {
			return fmt.Errorf("%s %s/%s: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
		rd.Namespace = ns
		o.RedisDestinations = append(o.RedisDestinations, rd)
		return nil
	}
	kind, ok := istioKinds[doc.Kind]
	if !ok || gv.Group != kind.gvk.Group {
		return nil
	}
	spec := kind.spec()
	if len(doc.Spec) > 0 {
		if err := protojson.Unmarshal(doc.Spec, spec); err != nil {
			return fmt.Errorf("%s %s/%s: spec: %w", doc.Kind, ns, doc.Metadata.Name, err)
		}
	}
	cfg := config.Config{
		Meta: config.Meta{
			GroupVersionKind:  kind.gvk,
			Name:              doc.Metadata.Name,
			Namespace:         ns,
			Labels:            doc.Metadata.Labels,
			Annotations:       doc.Metadata.Annotations,
			ResourceVersion:   doc.Metadata.ResourceVersion,
			CreationTimestamp: doc.Metadata.CreationTimestamp.Time,
		},
		Spec: spec,
	}
	switch doc.Kind {
	case "ServiceEntry":
		if len(doc.Status) > 0 && string(doc.Status) != "null" {
			// Written by istiod, perhaps a newer one: fields it added are no error.
			status := &networking.ServiceEntryStatus{}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(doc.Status, status); err != nil {
				return fmt.Errorf("%s %s/%s: status: %w", doc.Kind, ns, doc.Metadata.Name, err)
			}
			cfg.Status = status
		}
		o.ServiceEntries = append(o.ServiceEntries, cfg)
	case "VirtualService":
		// istiod's validation rejects these; a file may still hold one.
		if len(spec.(*networking.VirtualService).GetHosts()) == 0 {
			return fmt.Errorf("VirtualService %s/%s has no hosts: it applies to nothing", ns, doc.Metadata.Name)
		}
		o.VirtualServices = append(o.VirtualServices, cfg)
	case "DestinationRule":
		o.DestinationRules = append(o.DestinationRules, cfg)
	case "WorkloadEntry":
		o.WorkloadEntries = append(o.WorkloadEntries, cfg)
	}
	return nil
}

// strictUnmarshal rejects unknown fields, as the API server's schema does: a
// misspelt field must not be ignored silently.
// unknownSpecField reports a field of a Redis object's spec that this API does not
// have: a typo, which the API server would prune without a word. A value this API
// cannot read is left to the object's own decoding, which keeps the object as
// Unreadable, as the controller does (package redisspec); a typo after such a
// value goes unseen, as decoding stops there.
func unknownSpecField(js []byte, spec any) error {
	var doc struct {
		Spec json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(js, &doc) != nil || len(doc.Spec) == 0 {
		return nil
	}
	strict, _ := sigsjson.UnmarshalStrict(doc.Spec, spec, sigsjson.DisallowUnknownFields)
	return errors.Join(strict...)
}

// WriteEnvoyFilters writes EnvoyFilters as YAML documents separated by ---, in the
// order given. The same filters always give the same bytes.
func WriteEnvoyFilters(w io.Writer, efs []*model.EnvoyFilter) error {
	for i, ef := range efs {
		js, err := ef.Document()
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("EnvoyFilter %s: %w", ef.Key(), err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(y); err != nil {
			return err
		}
	}
	return nil
}

// WriteRouteConfigs writes route configurations, by name, as YAML comments after the
// EnvoyFilters: they are served to sidecars by the controller, not applied to the
// cluster, so the output stays something kubectl can apply.
func WriteRouteConfigs(w io.Writer, routes map[string]*model.RouteConfig) error {
	for _, name := range slices.Sorted(maps.Keys(routes)) {
		rc := routes[name]
		js, err := protojson.Marshal(rc.Config)
		if err != nil {
			return fmt.Errorf("route configuration %s: %w", name, err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("route configuration %s: %w", name, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "---\n# Route configuration %s (%s), served to sidecars by the controller's route server:\n", name, rc.TypeURL)
		for _, line := range strings.SplitAfter(strings.TrimSuffix(string(y), "\n"), "\n") {
			b.WriteString("#   " + line)
		}
		b.WriteString("\n")
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// SyntheticServiceEntry returns the ServiceEntry istiod derives from a Kubernetes
// Service and serves to api clients as synthetic-<name>: the cluster-local host, the
// ClusterIP as address, the ports by name and number, the selector as workload
// selector, the exportTo annotation as exportTo, and no annotations (those come from the Service through
// model.Snapshot.KubeService, as in the controller).
func SyntheticServiceEntry(svc *corev1.Service, domainSuffix string) config.Config {
	se := &networking.ServiceEntry{
		Hosts:      []string{svc.Name + "." + svc.Namespace + ".svc." + domainSuffix},
		Location:   networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC,
	}
	switch ip := svc.Spec.ClusterIP; ip {
	case "", corev1.ClusterIPNone:
		se.Resolution = networking.ServiceEntry_NONE
		se.Addresses = []string{"0.0.0.0"} // as istiod; clients get per-endpoint listeners, not a service VIP
	default:
		se.Addresses = []string{ip}
	}
	for _, p := range svc.Spec.Ports {
		se.Ports = append(se.Ports, &networking.ServicePort{
			Number:   uint32(p.Port), //nolint:gosec // ports are 1..65535
			Name:     p.Name,
			Protocol: string(kube.ConvertProtocol(p.Port, p.Name, p.Protocol, p.AppProtocol)),
		})
	}
	if len(svc.Spec.Selector) > 0 {
		se.WorkloadSelector = &networking.WorkloadSelector{Labels: svc.Spec.Selector}
	}
	se.ExportTo = ServiceExportTo(svc)
	return config.Config{
		Meta: config.Meta{
			GroupVersionKind: gvk.ServiceEntry,
			Name:             model.SyntheticPrefix + svc.Name,
			Namespace:        svc.Namespace,
		},
		Spec: se,
	}
}

// ExportToAnnotation on a Kubernetes Service is its exportTo, comma-separated.
const ExportToAnnotation = "networking.istio.io/exportTo"

// ServiceExportTo returns a Kubernetes Service's exportTo annotation as Istio reads
// it, sorted; nil without one.
func ServiceExportTo(svc *corev1.Service) []string {
	v, ok := svc.Annotations[ExportToAnnotation]
	if !ok {
		return nil
	}
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// objects are Istio configs as a snapshot holds them.
func objects(cfgs []config.Config) []model.Object {
	out := make([]model.Object, len(cfgs))
	for i, c := range cfgs {
		out[i] = model.Object{Name: c.Name, Namespace: c.Namespace, Annotations: c.Annotations, ResourceVersion: c.ResourceVersion, Created: c.CreationTimestamp, Spec: c.Spec}
	}
	return out
}
