package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"aeraki.io/aeraki/pkg/bootstrap"
	"aeraki.io/aeraki/pkg/push"
)

// statusLimit bounds the status read: a large mesh's is a few MB.
const statusLimit = 64 << 20

// status prints what a running controller wrote and what the proxies make of it,
// from its status endpoint (served with its metrics, to whom the apiserver
// authorizes: the aeraki-status-reader ClusterRole). Reach the leader with
// `kubectl -n istio-system port-forward <leader pod> 8443`.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aeraki status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "https://localhost:8443", "the controller's metrics server")
	tokenFile := fs.String("token-file", "", "a file holding the bearer token to send (e.g. from `kubectl create token`); $AERAKI_TOKEN otherwise")
	caFile := fs.String("ca-file", "", "PEM certificate(s) the server's certificate must chain to")
	insecure := fs.Bool("insecure-skip-tls-verify", false, "do not verify the server's certificate (the controller's own self-signed one)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: aeraki status [flags]\n\nPrints, per service, the EnvoyFilters the controller wrote and the proxies that reject them, and why.\nExit status: 0 no proxy rejects what the controller wrote, 1 some do (or the status cannot be read), 2 usage error.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	token := os.Getenv("AERAKI_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		token = strings.TrimSpace(string(b))
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure} //nolint:gosec // asked for by flag
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "error: no certificate in %s\n", *caFile)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	st, raw, err := fetchStatus(ctx, strings.TrimSuffix(*addr, "/")+bootstrap.StatusPath, token, tlsConfig)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(raw)
	} else {
		printStatus(stdout, st)
	}
	for _, s := range st.Services {
		if s.Rejecting > 0 {
			return 1
		}
	}
	return 0
}

func fetchStatus(ctx context.Context, url, token string, tlsConfig *tls.Config) (*push.Status, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, statusLimit))
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	st := &push.Status{}
	if err := json.Unmarshal(body, st); err != nil {
		return nil, nil, fmt.Errorf("%s: not a status: %w", url, err)
	}
	return st, body, nil
}

func printStatus(w io.Writer, st *push.Status) {
	if !st.Leader {
		fmt.Fprintln(w, "This replica is not the leader: it writes nothing and does not look at the proxies. Ask the leader (the holder of the Lease aeraki-leader).")
	}
	if st.ObservedAt.IsZero() {
		fmt.Fprintln(w, "Proxies: not looked at yet (--proxy-status-interval=0 turns it off).")
	} else {
		fmt.Fprintf(w, "Proxies at %s: %d, %d in sync, %d rejecting something\n", st.ObservedAt.Format(time.RFC3339), st.Proxies, st.InSync, st.Rejecting)
		if st.NotOurs > 0 {
			fmt.Fprintf(w, "  %d reject only what is not aeraki's, e.g. %s\n", st.NotOurs, firstLine(st.NotOursExample))
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tENVOYFILTERS\tREJECTING\tCONTAINED\tWHY")
	for _, s := range st.Services {
		why := ""
		if s.Rejecting > 0 {
			why = s.Example + ": " + firstLine(s.Detail)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Name, len(s.EnvoyFilters), s.Rejecting, s.Contained, why)
	}
	_ = tw.Flush()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
