package meshpem

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCertificates(t *testing.T) {
	one, two := selfSigned(t), selfSigned(t)
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")})
	certs, err := Certificates(append(append(append([]byte{}, one...), key...), two...))
	if err != nil || len(certs) != 2 {
		t.Errorf("two certificates and a key: %d, %v; want the two certificates", len(certs), err)
	}
	for _, bad := range [][]byte{nil, []byte("not PEM"), key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})} {
		if _, err := Certificates(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "root.pem"), filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(good, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRoots(good); err != nil {
		t.Error(err)
	}
	if _, err := LoadRoots(empty); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("empty file: %v", err)
	}
	if _, err := LoadRoots(filepath.Join(dir, "absent.pem")); err == nil {
		t.Error("absent file: no error")
	}
}
