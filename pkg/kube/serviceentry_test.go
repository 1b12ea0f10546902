package kube

import (
	"context"
	"errors"
	"fmt"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestServiceEntryCacheHasStatusAddresses: the manager's cache has a ServiceEntry's
// status addresses, which istiod does not send, and not its spec, which it does.
func TestServiceEntryCacheHasStatusAddresses(t *testing.T) {
	admin := adminClient(t, apiserver.RestConfig(t))
	ns := testNamespace(t, admin, "serviceentry-cache")
	in := startInstance(t, "serviceentry-cache", Options{}, newTranslation("serviceentry-cache", nil))
	ctx := t.Context()
	se := &clientnetworkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Namespace: ns},
		Spec: networking.ServiceEntry{
			Hosts:      []string{"greeter.example"},
			Ports:      []*networking.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			Resolution: networking.ServiceEntry_DNS,
		},
	}
	if err := admin.Create(ctx, se); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), se) })
	se.Status.Addresses = []*networking.ServiceEntryAddress{{Value: "240.240.0.9", Host: "greeter.example"}}
	if err := admin.Status().Update(ctx, se); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the status addresses in the cache", func(ctx context.Context) error {
		cached := &clientnetworkingv1.ServiceEntry{}
		if err := in.mgr.GetCache().Get(ctx, client.ObjectKeyFromObject(se), cached); err != nil {
			return err
		}
		if len(cached.Spec.GetHosts()) != 0 || cached.ManagedFields != nil {
			return fmt.Errorf("the cache keeps the spec %v and managed fields %v", cached.Spec.GetHosts(), cached.ManagedFields)
		}
		if a := cached.Status.GetAddresses(); len(a) != 1 || a[0].GetValue() != "240.240.0.9" {
			return errors.New("no status address yet")
		}
		return nil
	})
}
