package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istiomanifests "istio.io/istio/manifests"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStartNeedsBinaries(t *testing.T) {
	t.Setenv(EnvBinDir, "")
	_, err := Start(t.Context(), Options{WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make testbin") {
		t.Fatalf("Start without binaries: got %v, want an error naming `make testbin`", err)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\necho \"fake $0 refuses to start\" >&2\nexit 3\n"
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Start(t.Context(), Options{BinDir: bin, WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "refuses to start") {
		t.Fatalf("Start with a failing etcd: got %v, want an error quoting its log", err)
	}
}

// TestFreePortsOutsideEphemeralRange: a port picked for a process started
// later must not be one the kernel may give an outgoing connection meanwhile.
func TestFreePortsOutsideEphemeralRange(t *testing.T) {
	lo, hi := portPool()
	held, err := net.Listen("tcp", "127.0.0.1:0") // an ephemeral port in use
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if p := held.Addr().(*net.TCPAddr).Port; p >= lo && p < hi {
		t.Fatalf("pool %d-%d overlaps the ephemeral port %d the kernel just gave", lo, hi, p)
	}
	ports, err := freePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < lo || p >= hi || seen[p] {
			t.Errorf("port %d: outside %d-%d or given twice (%v)", p, lo, hi, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d was handed out but is not free: %v", p, err)
			continue
		}
		_ = l.Close()
	}
}

func TestIstioCRDsEmbedded(t *testing.T) {
	data, err := fs.ReadFile(istiomanifests.FS, istioCRDs)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := decodeCRDs(data)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, crd := range crds {
		kinds[crd.Spec.Names.Kind] = true
	}
	for _, kind := range []string{"ServiceEntry", "VirtualService", "DestinationRule", "EnvoyFilter"} {
		if !kinds[kind] {
			t.Errorf("Istio CRD bundle lacks %s (has %v)", kind, kinds)
		}
	}
}

func TestControlPlane(t *testing.T) {
	ctx := t.Context()
	begin := time.Now()
	cp := StartForTest(t, Options{WorkDir: t.TempDir(), Istiod: true})
	t.Logf("control plane up in %s", time.Since(begin).Round(time.Millisecond))

	istio, err := istioclient.NewForConfig(cp.RestConfig)
	if err != nil {
		t.Fatal(err)
	}
	const ip = "10.20.0.5"
	createServiceEntry(t, istio, "before", "240.240.0.10")
	waitListener(t, cp, ip, "240.240.0.10_9000", "virtualInbound")

	t.Run("istiod restart", func(t *testing.T) {
		old := cp.pids()["istiod"]
		if err := cp.StopIstiod(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, old)
		if _, err := cp.SidecarListeners(ctx, ip, "default", nil); err == nil {
			t.Fatal("SidecarListeners succeeded with istiod stopped")
		}
		begin := time.Now()
		if err := cp.StartIstiod(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("istiod restarted in %s", time.Since(begin).Round(time.Millisecond))
		waitListener(t, cp, ip, "240.240.0.10_9000")
	})

	t.Run("process ends with its context", func(t *testing.T) {
		if err := cp.StopIstiod(); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithCancel(ctx)
		if err := cp.StartIstiod(short); err != nil {
			cancel()
			t.Fatal(err)
		}
		pid := cp.pids()["istiod"]
		cancel()
		waitGone(t, pid, 2*defaultGrace)
		// The slot of a process that ended with its context is free again.
		if err := cp.StartIstiod(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("apiserver restart", func(t *testing.T) {
		old := cp.pids()["kube-apiserver"]
		if err := cp.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, old)
		if _, err := istio.NetworkingV1().ServiceEntries("default").Get(ctx, "before", metav1.GetOptions{}); err == nil {
			t.Fatal("apiserver still answers after StopAPIServer")
		}
		begin := time.Now()
		if err := cp.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("kube-apiserver restarted in %s", time.Since(begin).Round(time.Millisecond))
		// etcd kept the data, and istiod's watches resume on the same address.
		if _, err := istio.NetworkingV1().ServiceEntries("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
			t.Fatalf("ServiceEntry lost across apiserver restart: %v", err)
		}
		createServiceEntry(t, istio, "after", "240.240.0.11")
		waitListener(t, cp, ip, "240.240.0.11_9000")
	})

	pids := cp.pids()
	if len(pids) != 3 {
		t.Fatalf("running processes %v, want etcd, kube-apiserver and istiod", pids)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		assertGone(t, pid)
	}
}

func createServiceEntry(t *testing.T, istio istioclient.Interface, name, vip string) {
	t.Helper()
	se := &clientnetworkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: networkingv1.ServiceEntry{
			Hosts:      []string{name + ".example.com"},
			Addresses:  []string{vip},
			Ports:      []*networkingv1.ServicePort{{Number: 9000, Name: "tcp-test", Protocol: "TCP"}},
			Location:   networkingv1.ServiceEntry_MESH_INTERNAL,
			Resolution: networkingv1.ServiceEntry_NONE,
		},
	}
	if _, err := istio.NetworkingV1().ServiceEntries("default").Create(t.Context(), se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry %s: %v", name, err)
	}
}

// waitListener polls a fake sidecar's LDS until every named listener is there.
func waitListener(t *testing.T, cp *ControlPlane, ip string, names ...string) {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			listeners, err := cp.SidecarListeners(ctx, ip, "default", map[string]string{"app": "test"})
			if err != nil {
				return err
			}
			for _, name := range names {
				if listeners[name] == nil {
					have := make([]string, 0, len(listeners))
					for n := range listeners {
						have = append(have, n)
					}
					return fmt.Errorf("no listener %s in %v", name, have)
				}
			}
			return nil
		}()
		if last == nil {
			t.Logf("sidecar sees %v after %s", names, time.Since(begin).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("sidecar listeners: %v", last)
}

// waitGone waits until pid no longer exists.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertGone(t, pid)
}

// assertGone fails unless pid no longer exists (reaped, not a zombie).
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after stop (kill 0: %v)", pid, err)
	}
}
