#!/usr/bin/env bash
# Builds the real control-plane binaries that the tests and `make run-local` use
# (etcd, kube-apiserver, kubectl, pilot-discovery) from the Go module proxy into a
# cache directory outside the repository. A binary already present is not rebuilt.
#
# Usage: hack/testbin.sh [etcd] [kube-apiserver] [kubectl] [pilot-discovery] [pilot-discovery-1.30]
# (no arguments: etcd, kube-apiserver and both istiods). Prints the directory
# holding the binaries on stdout; progress goes to stderr.
#
# pilot-discovery is the istiod of the project's own go.mod; pilot-discovery-1.30 is
# an older istiod (Istio master between 1.30.0-alpha.1 and 1.31.0-alpha.0, the
# oldest snapshot the module proxy serves) that `make compat` runs beside it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
k8s_version=v1.36.1
staging_version=v0.36.1
etcd_version=v3.6.16
istio_version=$(awk '$1 == "istio.io/istio" {print $2}' "$repo/go.mod")

cache=${AERAKI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aeraki}
bin="$cache/testbin/k8s-$k8s_version-etcd-$etcd_version-istio-${istio_version##*-}"
src="$cache/src"
mkdir -p "$bin" "$src"

log() { echo "testbin: $*" >&2; }

# fresh_module DIR NAME: an empty throwaway module in DIR.
# Builds use the default flags (no -trimpath) so that they share the build cache with
# the project's own tests, which compile many of the same packages.
fresh_module() {
	rm -rf "$1"
	mkdir -p "$1"
	(cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

build_etcd() {
	local dir="$src/etcd"
	fresh_module "$dir" local/etcd
	cat >"$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
	(cd "$dir" && go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2 && go mod tidy >&2 &&
		go build -o "$bin/etcd.tmp" .)
	mv "$bin/etcd.tmp" "$bin/etcd"
}

# kubernetes' own go.mod points its staging modules at ./staging; a consumer must
# replace each of them with the published version.
k8s_module() {
	local dir="$src/kubernetes"
	[ -f "$dir/.ready" ] && return 0
	fresh_module "$dir" local/kubernetes
	local gomod
	gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$k8s_version" | awk -F'"' '$2 == "GoMod" {print $4}')
	{
		echo "require k8s.io/kubernetes $k8s_version"
		awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print "replace " $1 " => " $1 " '"$staging_version"'"}' "$gomod"
	} >>"$dir/go.mod"
	(cd "$dir" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$k8s_version" "k8s.io/kubernetes/cmd/kubectl@$k8s_version" >&2)
	touch "$dir/.ready"
}

build_k8s() { # name
	k8s_module
	local minor=${k8s_version#v1.}
	minor=${minor%%.*}
	local pkg="k8s.io/component-base/version"
	(cd "$src/kubernetes" && go build \
		-ldflags "-X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
		-o "$bin/$1.tmp" "k8s.io/kubernetes/cmd/$1")
	mv "$bin/$1.tmp" "$bin/$1"
}

build_pilot() {
	# The project's own go.mod pins the Istio dependency set that builds; reuse it.
	local dir="$src/istio"
	rm -rf "$dir"
	mkdir -p "$dir"
	sed 's#^module .*#module local/istio#' "$repo/go.mod" >"$dir/go.mod"
	cp "$repo/go.sum" "$dir/go.sum"
	(cd "$dir" && go build -mod=mod -o "$bin/pilot-discovery.tmp" istio.io/istio/pilot/cmd/pilot-discovery)
	mv "$bin/pilot-discovery.tmp" "$bin/pilot-discovery"
}

# The older istiod builds in its own throwaway module from that snapshot's go.mod
# requirements, except the pre-release pins the module proxy refuses, which are
# raised to the nearest versions it serves.
old_istio_version=v0.0.0-20260423205519-b01690e6db7d
build_old_pilot() { # name
	local dir="$src/$1"
	fresh_module "$dir" "local/$1"
	cat >>"$dir/go.mod" <<MOD
require (
	istio.io/istio $old_istio_version
	istio.io/api v1.30.8
	istio.io/client-go v1.30.8
	github.com/envoyproxy/go-control-plane/contrib v1.36.1-0.20260729145720-a2d8c7492908
	github.com/agentgateway/agentgateway/api v0.0.0-20260501213430-773586679f1c
)
MOD
	(cd "$dir" && go get "istio.io/istio/pilot/cmd/pilot-discovery@$old_istio_version" >&2)
	# Stamped as Istio's own build of that commit stamps it (common/scripts/
	# report_build_info.sh: the VERSION file plus -dev, the git revision), so that it
	# reports to aeraki what a development build of it really reports.
	local istio_dir pkg="istio.io/istio/pkg/version"
	istio_dir=$(cd "$dir" && go list -m -f '{{.Dir}}' istio.io/istio)
	(cd "$dir" && go build \
		-ldflags "-X $pkg.buildVersion=$(cat "$istio_dir/VERSION")-dev -X $pkg.buildGitRevision=${old_istio_version##*-}" \
		-o "$bin/$1.tmp" istio.io/istio/pilot/cmd/pilot-discovery)
	mv "$bin/$1.tmp" "$bin/$1"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(etcd kube-apiserver pilot-discovery pilot-discovery-1.30)
for b in "${want[@]}"; do
	if [ -x "$bin/$b" ]; then
		continue
	fi
	log "building $b (once; later runs reuse $bin)"
	start=$SECONDS
	case $b in
	etcd) build_etcd ;;
	kube-apiserver | kubectl) build_k8s "$b" ;;
	pilot-discovery) build_pilot ;;
	pilot-discovery-1.30) build_old_pilot "$b" ;;
	*)
		log "unknown binary $b"
		exit 2
		;;
	esac
	log "built $b in $((SECONDS - start))s"
done
echo "$bin"
