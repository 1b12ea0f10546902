#!/usr/bin/env bash
# Builds the real control-plane binaries that the tests and `make run-local` use
# (etcd, kube-apiserver, kubectl, pilot-discovery) from the Go module proxy into a
# cache directory outside the repository. A binary already present is not rebuilt.
#
# Usage: hack/testbin.sh [etcd] [kube-apiserver] [kubectl] [pilot-discovery]
# (no arguments: etcd, kube-apiserver and pilot-discovery). Prints the directory
# holding the binaries on stdout; progress goes to stderr.
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

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(etcd kube-apiserver pilot-discovery)
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
	*)
		log "unknown binary $b"
		exit 2
		;;
	esac
	log "built $b in $((SECONDS - start))s"
done
echo "$bin"
