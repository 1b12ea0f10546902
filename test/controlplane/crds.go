package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	istiomanifests "istio.io/istio/manifests"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
)

// istioCRDs is the CRD bundle of Istio's base chart. The istio module embeds
// its charts, so the CRDs always match the istiod built from the same version.
const istioCRDs = "charts/base/files/crd-all.gen.yaml"

const crdTimeout = 60 * time.Second

func (c *ControlPlane) installCRDs(ctx context.Context) error {
	client, err := apiextensions.NewForConfig(c.RestConfig)
	if err != nil {
		return fmt.Errorf("apiextensions client: %w", err)
	}
	data, err := fs.ReadFile(istiomanifests.FS, istioCRDs)
	if err != nil {
		return fmt.Errorf("read Istio CRDs from the istio module: %w", err)
	}
	crds, err := decodeCRDs(data)
	if err != nil {
		return fmt.Errorf("decode Istio CRDs: %w", err)
	}
	ours, err := AerakiCRDs()
	if err != nil {
		return err
	}
	crds = append(crds, ours...)
	for _, path := range c.opts.ExtraCRDs {
		data, err := os.ReadFile(filepath.Clean(path))
		if err != nil {
			return fmt.Errorf("read CRD file: %w", err)
		}
		extra, err := decodeCRDs(data)
		if err != nil {
			return fmt.Errorf("decode CRD file %s: %w", path, err)
		}
		crds = append(crds, extra...)
	}
	for _, crd := range crds {
		if err := applyCRD(ctx, client, crd); err != nil {
			return err
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, client, crd.Name); err != nil {
			return err
		}
	}
	return nil
}

// decodeCRDs reads every CustomResourceDefinition of a multi-document YAML
// file and rejects any other kind, so a wrong file is noticed.
func decodeCRDs(data []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := dec.Decode(crd)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if crd.Kind == "" && crd.Name == "" {
			continue // empty document
		}
		if crd.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s %q is not a CustomResourceDefinition", crd.Kind, crd.Name)
		}
		out = append(out, crd)
	}
}

// applyCRD creates crd or, in a reused WorkDir, replaces its spec.
func applyCRD(ctx context.Context, client apiextensions.Interface, crd *apiextensionsv1.CustomResourceDefinition) error {
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	_, err := crds.Create(ctx, crd, metav1.CreateOptions{})
	switch {
	case err == nil:
		return nil
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("create CRD %s: %w", crd.Name, err)
	}
	current, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get CRD %s: %w", crd.Name, err)
	}
	crd.ResourceVersion = current.ResourceVersion
	if _, err := crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update CRD %s: %w", crd.Name, err)
	}
	return nil
}

func waitEstablished(ctx context.Context, client apiextensions.Interface, name string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, crdTimeout, true, func(ctx context.Context) (bool, error) {
		crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err // transient until the deadline says otherwise
			return false, nil
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		last = fmt.Errorf("conditions %v", crd.Status.Conditions)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established: %w (last: %w)", name, err, last)
	}
	return nil
}

func (c *ControlPlane) createNamespaces(ctx context.Context, names ...string) error {
	client, err := kubernetes.NewForConfig(c.RestConfig)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	for _, name := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}
