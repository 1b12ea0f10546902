package bootstrap

import (
	"strings"
	"testing"
)

type fakeXDS struct {
	reason, message string
	synced          bool
}

func (f fakeXDS) LastError() (reason, message string) { return f.reason, f.message }
func (f fakeXDS) HasSynced() bool                     { return f.synced }

// /readyz's xds check says why the connection to istiod fails, synced or not: a
// pod that lost istiod for good should not look healthy.
func TestXDSReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		xds  fakeXDS
		want string // "" means ready
	}{
		{"synced", fakeXDS{synced: true}, ""},
		{"connecting", fakeXDS{}, "not synced yet"},
		{"failing", fakeXDS{reason: "tls", message: "istiod's certificate does not verify"}, "(tls): istiod's certificate does not verify"},
		{"failing after sync", fakeXDS{reason: "unreachable", message: "cannot reach istiod", synced: true}, "(unreachable): cannot reach istiod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := xdsReady(tc.xds)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not ready: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
