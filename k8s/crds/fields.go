package crds

import (
	"fmt"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// Field is one field of a CRD's spec: its path (arrays as []), JSON type and, for
// enums, the values allowed.
type Field struct {
	Kind string
	Path string
	Type string
	Enum []string
}

// String is the field as one line of a field list.
func (f Field) String() string {
	s := f.Kind + " " + f.Path + " " + f.Type
	if len(f.Enum) > 0 {
		s += " " + strings.Join(f.Enum, ",")
	}
	return s
}

// ParseField reads a line String wrote.
func ParseField(line string) (Field, error) {
	parts := strings.Fields(line)
	if len(parts) < 3 || len(parts) > 4 {
		return Field{}, fmt.Errorf("field line %q is not: kind path type [enum,...]", line)
	}
	f := Field{Kind: parts[0], Path: parts[1], Type: parts[2]}
	if len(parts) == 4 {
		f.Enum = strings.Split(parts[3], ",")
	}
	return f, nil
}

// SpecFields lists every field under spec of the CRDs of group in the YAML
// documents of data, sorted by kind and path.
func SpecFields(data []byte, group string) ([]Field, error) {
	var out []Field
	for _, doc := range strings.Split(string(data), "\n---") {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal([]byte(doc), &crd); err != nil {
			return nil, fmt.Errorf("reading a CRD: %w", err)
		}
		if crd.Spec.Group != group {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			spec, ok := v.Schema.OpenAPIV3Schema.Properties["spec"]
			if !ok {
				continue
			}
			walk(crd.Spec.Names.Kind, "spec", &spec, &out)
		}
	}
	slices.SortFunc(out, func(a, b Field) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

func walk(kind, path string, s *apiextensionsv1.JSONSchemaProps, out *[]Field) {
	f := Field{Kind: kind, Path: path, Type: s.Type}
	for _, e := range s.Enum {
		f.Enum = append(f.Enum, strings.Trim(string(e.Raw), `"`))
	}
	*out = append(*out, f)
	for name, p := range s.Properties {
		walk(kind, path+"."+name, &p, out)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(kind, path+"[]", s.Items.Schema, out)
	}
}
