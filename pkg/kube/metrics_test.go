package kube

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	certutil "k8s.io/client-go/util/cert"
)

// TestMetricsOptions: metrics are served over HTTPS behind the apiserver's
// authentication and authorization unless a local run asks for plain HTTP; a
// certificate directory must hold both files; without one the certificate is
// self-signed and made at start, never read from elsewhere.
func TestMetricsOptions(t *testing.T) {
	plain, err := metricsOptions(Options{MetricsAddr: "127.0.0.1:8080", InsecureMetrics: true})
	if err != nil || plain.SecureServing || plain.FilterProvider != nil {
		t.Errorf("insecure: secure %t, filter %t, %v; want plain HTTP without a filter", plain.SecureServing, plain.FilterProvider != nil, err)
	}

	self, err := metricsOptions(Options{MetricsAddr: ":8443"})
	if err != nil {
		t.Fatal(err)
	}
	if !self.SecureServing || self.FilterProvider == nil || self.CertDir != "" {
		t.Errorf("default: secure %t, filter %t, cert dir %q; want HTTPS with the filter and no directory", self.SecureServing, self.FilterProvider != nil, self.CertDir)
	}
	cfg := &tls.Config{NextProtos: []string{"h2"}} //nolint:gosec // controller-runtime's starting point; the options set the version
	for _, o := range self.TLSOpts {
		o(cfg)
	}
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS: protocols %q, min version %x; want HTTP/1.1 only, TLS 1.2 or later", cfg.NextProtos, cfg.MinVersion)
	}
	if cfg.GetCertificate == nil {
		t.Fatal("no self-signed certificate: controller-runtime would look in its default directory")
	}
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("self-signed certificate for %v", leaf.IPAddresses)
	}

	dir := t.TempDir()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("aeraki", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsCertFile), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := metricsOptions(Options{MetricsAddr: ":8443", MetricsCertDir: dir}); err == nil || !strings.Contains(err.Error(), MetricsKeyFile) {
		t.Errorf("a directory without %s: %v; want an error naming it", MetricsKeyFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	fromDir, err := metricsOptions(Options{MetricsAddr: ":8443", MetricsCertDir: dir})
	if err != nil || !fromDir.SecureServing || fromDir.CertDir != dir || fromDir.CertName != MetricsCertFile || fromDir.KeyName != MetricsKeyFile {
		t.Errorf("with a directory: %+v, %v; want HTTPS with its %s and %s", fromDir, err, MetricsCertFile, MetricsKeyFile)
	}
	cfg = &tls.Config{} //nolint:gosec // as above
	for _, o := range fromDir.TLSOpts {
		o(cfg)
	}
	if cfg.GetCertificate != nil {
		t.Error("with a directory, the self-signed certificate would take the place of its files")
	}
}
