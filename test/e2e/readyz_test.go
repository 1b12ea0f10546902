package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"aeraki.io/aeraki/test/controlplane"
)

// /readyz passes only once both the first xDS sync and the Kubernetes caches' sync
// are done. The caches are held back by holding the controller's list of Services.
func TestReadyzWaitsForTheCaches(t *testing.T) {
	e := startControlPlane(t)
	release := make(chan struct{})
	cfg := rest.CopyConfig(e.cp.RestConfig)
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			// Lists and watches both: an informer may list through a watch that sends
			// the initial objects first.
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/services") {
				select {
				case <-release:
				case <-req.Context().Done():
					return nil, req.Context().Err()
				}
			}
			return next.RoundTrip(req)
		})
	})
	addrs, err := controlplane.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	probe := addrs[0]
	opts := e.options()
	opts.Manager.ProbeAddr = probe
	e.runController(t, "controller", cfg, opts)

	readyz := func(ctx context.Context) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+probe+"/readyz?verbose", http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error() // not listening yet
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err.Error()
		}
		return resp.StatusCode, string(body)
	}
	var last string
	waitReadyz := func(what string, ok func(code int, body string) (bool, error)) {
		t.Helper()
		err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			code, body := readyz(ctx)
			last = body
			return ok(code, body)
		})
		if err != nil {
			t.Fatalf("/readyz never %s: %v; last body:\n%s", what, err, last)
		}
	}
	waitReadyz("passed the xds check while the caches wait", func(code int, body string) (bool, error) {
		if code == http.StatusOK {
			return false, errors.New("ready while the Services' list is held")
		}
		return strings.Contains(body, "[+]xds ok") && strings.Contains(body, "[-]cache failed"), nil
	})
	close(release)
	waitReadyz("became ready once the caches synced", func(code int, body string) (bool, error) {
		return code == http.StatusOK && strings.Contains(body, "[+]cache ok") && strings.Contains(body, "[+]xds ok"), nil
	})
}
