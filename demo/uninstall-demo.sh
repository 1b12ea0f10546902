#!/usr/bin/env bash
# Removes what install-demo.sh installed: the samples, aeraki, Prometheus and Grafana,
# and Istio. Safe to run again, or after a partial install.
#   ISTIO_DIR  the unpacked Istio release (default: the directory above istioctl's bin/)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

die() { echo "uninstall-demo: $*" >&2; exit 1; }
say() { echo "==> $*"; }

command -v kubectl >/dev/null 2>&1 || die "kubectl is not on PATH"
kubectl cluster-info >/dev/null 2>&1 || die "no reachable cluster: 'kubectl cluster-info' fails"

say "samples"
for proto in redis kafka thrift dubbo; do
	kubectl delete -f "$here/$proto" --ignore-not-found --wait=false
done

say "aeraki"
kubectl delete clusterrolebinding aeraki-metrics-reader --ignore-not-found
kubectl delete -f "$root/k8s/aeraki.yaml" --ignore-not-found
# The EnvoyFilters aeraki wrote stay behind if it was stopped before it cleaned up.
kubectl delete envoyfilters --all-namespaces -l manager=aeraki --ignore-not-found

if [[ -z "${ISTIO_DIR:-}" ]] && command -v istioctl >/dev/null 2>&1; then
	ISTIO_DIR=$(cd "$(dirname "$(readlink -f "$(command -v istioctl)")")/.." && pwd)
fi
addons="${ISTIO_DIR:-}/samples/addons"
if [[ -f "$addons/prometheus.yaml" && -f "$addons/grafana.yaml" ]]; then
	say "Prometheus and Grafana"
	kubectl delete -f "$addons/prometheus.yaml" -f "$addons/grafana.yaml" --ignore-not-found
else
	echo "uninstall-demo: Istio's samples/addons not found (set ISTIO_DIR): Prometheus and Grafana left in istio-system" >&2
fi

if command -v istioctl >/dev/null 2>&1; then
	say "Istio"
	istioctl uninstall -y --purge
	kubectl delete namespace istio-system --ignore-not-found
else
	echo "uninstall-demo: istioctl not on PATH: Istio left installed" >&2
fi
