package meshcert

import (
	"strings"
	"testing"
	"time"
)

// TestParseChain: what istiod answers is served only if the leaf is for our key,
// carries one SPIFFE identity, is valid now and chains to the answer's root as a
// server certificate; the served chain is the leaf and intermediates, never the root,
// however istiod splits its PEM elements.
func TestParseChain(t *testing.T) {
	ca := newTestCA(t, "mesh")
	key := newKey(t)
	now := time.Now()
	good := ca.leaf(t, key.Public(), []string{identity}, now)

	t.Run("accepted", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			chain []string
		}{
			{"one certificate per element", ca.chain(good)},
			{"leaf and intermediate in one element", []string{pemOf(good) + "\n" + pemOf(ca.inter), pemOf(ca.root)}},
			{"several roots", []string{pemOf(good), pemOf(ca.inter), pemOf(newTestCA(t, "next").root) + "\n" + pemOf(ca.root)}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cert, err := parseChain(tc.chain, key, now)
				if err != nil {
					t.Fatal(err)
				}
				if len(cert.tls.Certificate) != 2 || string(cert.tls.Certificate[0]) != string(good.Raw) || string(cert.tls.Certificate[1]) != string(ca.inter.Raw) {
					t.Errorf("served %d certificates, want the leaf and the intermediate", len(cert.tls.Certificate))
				}
				if cert.identity != identity || !cert.notAfter.Equal(good.NotAfter) || cert.tls.PrivateKey != key {
					t.Errorf("identity %q, expiry %s; want %s, %s, and our key", cert.identity, cert.notAfter, identity, good.NotAfter)
				}
			})
		}
	})

	other := newTestCA(t, "other")
	for _, tc := range []struct {
		name  string
		chain []string
		at    time.Time
		want  string
	}{
		{"no root", []string{pemOf(good)}, now, "1 certificate(s) in the chain"},
		{"not PEM", []string{"garbage", pemOf(ca.root)}, now, "chain element 0: no PEM certificate"},
		{"root not PEM", []string{pemOf(good), ""}, now, "root certificate: no PEM certificate"},
		{"another key", ca.chain(ca.leaf(t, newKey(t).Public(), []string{identity}, now)), now, "not for the key"},
		{"no identity", ca.chain(ca.leaf(t, key.Public(), nil, now)), now, "0 SPIFFE identities"},
		{"two identities", ca.chain(ca.leaf(t, key.Public(), []string{identity, "spiffe://cluster.local/ns/default/sa/x"}, now)), now, "2 SPIFFE identities"},
		{"another root", []string{pemOf(good), pemOf(ca.inter), pemOf(other.root)}, now, "unknown authority"},
		{"expired", ca.chain(good), now.Add(2 * time.Hour), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseChain(tc.chain, key, tc.at)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseChain: %v, want %q", err, tc.want)
			}
		})
	}
}
