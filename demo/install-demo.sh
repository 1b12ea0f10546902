#!/usr/bin/env bash
# Installs the aeraki demo on the cluster of the current kubectl context: Istio (with
# demo/istio/istio-demo.iop), Prometheus and Grafana from the Istio release, aeraki,
# the Dubbo, Thrift, Kafka/ZooKeeper and Redis samples, and the aeraki dashboard.
#
#   AERAKI_IMAGE  aeraki's image (default aeraki:latest)
#   DEMO_IMAGE    the sample apps' image (default aeraki-demo:latest)
#   ISTIO_DIR     the unpacked Istio release (default: the directory above istioctl's bin/)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
AERAKI_IMAGE=${AERAKI_IMAGE:-aeraki:latest}
DEMO_IMAGE=${DEMO_IMAGE:-aeraki-demo:latest}
GRAFANA_PORT=${GRAFANA_PORT:-3000}

die() { echo "install-demo: $*" >&2; exit 1; }
say() { echo "==> $*"; }

missing=()
for tool in kubectl istioctl curl sed; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
	die "missing on PATH: ${missing[*]} (kubectl, istioctl from an Istio release, curl)"
fi
if ! kubectl version >/dev/null 2>&1 || ! kubectl cluster-info >/dev/null 2>&1; then
	die "no reachable cluster: 'kubectl cluster-info' fails for context '$(kubectl config current-context 2>/dev/null || echo none)'"
fi
if [[ -z "${ISTIO_DIR:-}" ]]; then
	istioctl_path=$(command -v istioctl)
	ISTIO_DIR=$(cd "$(dirname "$(readlink -f "$istioctl_path")")/.." && pwd)
fi
addons="$ISTIO_DIR/samples/addons"
for f in prometheus.yaml grafana.yaml; do
	[[ -f "$addons/$f" ]] || die "$addons/$f not found: set ISTIO_DIR to the unpacked Istio release istioctl came with"
done

say "Istio (demo/istio/istio-demo.iop)"
istioctl install -y -f "$here/istio/istio-demo.iop"

say "Prometheus and Grafana from $addons"
# Prometheus with a job that scrapes aeraki's metrics over HTTPS with its token.
"$here/prometheus-with-aeraki.sh" <"$addons/prometheus.yaml" | kubectl apply -f - -f "$addons/grafana.yaml"

# aeraki lives in istio-system, Istio's root namespace: istiod serves its config only to
# identities of that namespace (k8s/aeraki.yaml says more).
say "aeraki ($AERAKI_IMAGE, in istio-system)"
sed "s|image: aeraki:latest|image: $AERAKI_IMAGE|" "$root/k8s/aeraki.yaml" | kubectl apply -f -
# aeraki serves its metrics only to tokens allowed to read them: Prometheus's.
kubectl create clusterrolebinding aeraki-metrics-reader --clusterrole=aeraki-metrics-reader \
	--serviceaccount=istio-system:prometheus --dry-run=client -o yaml | kubectl apply -f -
kubectl wait --for=condition=Established --timeout=60s \
	crd/redisservices.redis.aeraki.io crd/redisdestinations.redis.aeraki.io

say "samples ($DEMO_IMAGE)"
for proto in dubbo thrift kafka redis; do
	for f in "$here/$proto"/*.yaml; do
		sed "s|image: aeraki-demo:latest|image: $DEMO_IMAGE|" "$f" | kubectl apply -f -
	done
done

say "waiting for Grafana, aeraki and the samples"
kubectl -n istio-system rollout status deployment/grafana --timeout=300s
kubectl -n istio-system rollout status deployment/aeraki --timeout=300s
for ns in dubbo thrift kafka redis; do
	kubectl -n "$ns" wait --for=condition=Available deployment --all --timeout=300s ||
		echo "install-demo: some deployments in $ns are not available yet (kubectl -n $ns get pods)" >&2
done

say "dashboard demo/aeraki-demo.json into Grafana"
kubectl -n istio-system port-forward svc/grafana "$GRAFANA_PORT:3000" >/dev/null 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
	curl -fsS "http://127.0.0.1:$GRAFANA_PORT/api/health" >/dev/null 2>&1 && break
	sleep 1
done
# Istio's Grafana addon lets anonymous users in as admins.
{ printf '{"overwrite": true, "folderId": 0, "dashboard": '; cat "$here/aeraki-demo.json"; printf '}'; } |
	curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- \
		"http://127.0.0.1:$GRAFANA_PORT/api/dashboards/db" >/dev/null ||
	die "importing the dashboard failed: import demo/aeraki-demo.json by hand in Grafana (Dashboards > Import)"

cat <<MSG

The demo is installed. Open the dashboard "aeraki demo" with:

  istioctl dashboard grafana

The generated EnvoyFilters: kubectl get envoyfilters -A -l manager=aeraki
Remove everything: demo/uninstall-demo.sh
MSG
