#!/usr/bin/env bash
# Reads the Prometheus manifest of Istio's addons (samples/addons/prometheus.yaml) on
# stdin and writes it with a scrape job for aeraki added to its configuration.
#
# aeraki serves its metrics over HTTPS, only to a bearer token the apiserver accepts
# and allows to get /metrics. The addon's annotation-driven jobs send no token, so
# this job sends Prometheus's own ServiceAccount token; install-demo.sh binds that
# ServiceAccount to the ClusterRole aeraki-metrics-reader. aeraki's certificate is
# self-signed (k8s/aeraki.yaml sets no --metrics-cert-dir), so the job does not
# verify it.
set -euo pipefail

job='    - job_name: aeraki
      scheme: https
      authorization:
        credentials_file: /var/run/secrets/kubernetes.io/serviceaccount/token
      tls_config:
        insecure_skip_verify: true
      kubernetes_sd_configs:
      - role: endpoints
        namespaces:
          names:
          - istio-system
      relabel_configs:
      - action: keep
        regex: aeraki-metrics;https-metrics
        source_labels:
        - __meta_kubernetes_service_name
        - __meta_kubernetes_endpoint_port_name
      - action: replace
        source_labels:
        - __meta_kubernetes_namespace
        target_label: namespace
      - action: replace
        source_labels:
        - __meta_kubernetes_pod_name
        target_label: pod'

# The job goes first in the ConfigMap's prometheus.yml, whose scrape_configs line the
# addon indents by four spaces; anything else means the file is not the one expected.
awk -v job="$job" '
	/^    scrape_configs:$/ { print; print job; found++; next }
	{ print }
	END {
		if (found != 1) {
			print "prometheus-with-aeraki: want one \"    scrape_configs:\" line on stdin, found " found + 0 > "/dev/stderr"
			exit 1
		}
	}'
