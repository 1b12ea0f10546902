package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"aeraki.io/aeraki/pkg/model"
)

const kubeService = `apiVersion: v1
kind: Service
metadata:
  name: provider
  namespace: dubbo
  annotations: {interface: org.example.Provider}
spec:
  clusterIP: 10.96.0.20
  selector: {app: provider}
  ports:
  - {name: tcp-dubbo, port: 20880, targetPort: 20881}
  - {name: tcp-dubbo-named, port: 20882, targetPort: dubbo}
  - {name: http, port: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
`

func TestKubernetesServiceAsIstiodShowsIt(t *testing.T) {
	objs := &Objects{}
	if errs := objs.Decode(strings.NewReader(kubeService), "in"); len(errs) > 0 {
		t.Fatal(errs)
	}
	services := model.BuildServices(objs.Snapshot("cluster.local"))
	if len(services) != 1 {
		t.Fatalf("got %d services, want 1", len(services))
	}
	got := services[0]
	want := &model.Service{
		Name:             "synthetic-provider",
		Namespace:        "dubbo",
		Annotations:      map[string]string{"interface": "org.example.Provider"},
		Hosts:            []string{"provider.dubbo.svc.cluster.local"},
		Addresses:        []string{"10.96.0.20"},
		WorkloadSelector: map[string]string{"app": "provider"},
		Ports: []*model.Port{
			{Number: 20880, Name: "tcp-dubbo", Protocol: model.Dubbo, TargetPort: 20881},
			{Number: 20882, Name: "tcp-dubbo-named", Protocol: model.Dubbo}, // named target port: unknown
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}
	if got.Kind() != "Service" || got.ObjectName() != "provider" {
		t.Errorf("reported as %s %s", got.Kind(), got.ObjectName())
	}
}

func TestDecodeErrorsNameTheDocument(t *testing.T) {
	objs := &Objects{}
	in := "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a]}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: b}\nspec: {hostz: [b]}\n"
	errs := objs.Decode(strings.NewReader(in), "file.yaml")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "file.yaml: document 2") || !strings.Contains(errs[0].Error(), "default/b") {
		t.Fatalf("errors = %v", errs)
	}
	if len(objs.ServiceEntries) != 1 || objs.ServiceEntries[0].Name != "a" {
		t.Fatalf("the good document was not kept: %v", objs.ServiceEntries)
	}
}

func TestVirtualServiceWithoutHosts(t *testing.T) {
	objs := &Objects{}
	errs := objs.Decode(strings.NewReader("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns1}\nspec: {http: []}\n"), "f")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "VirtualService ns1/v has no hosts") {
		t.Fatalf("errors = %v", errs)
	}
}
