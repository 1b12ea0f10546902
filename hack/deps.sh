#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when they are missing:
# make, git and gcc to build; shellcheck (test/manifests checks every script) and
# redis-server (the demo's Redis client is tested against a real server). Debian's
# apt-get does it, as root or through sudo. `make test` and .ci/run both call it; the
# Go modules and the control-plane binaries are fetched by the build itself
# (hack/testbin.sh).
set -euo pipefail

packages=()
command -v make >/dev/null || packages+=(make)
command -v git >/dev/null || packages+=(git)
command -v gcc >/dev/null || packages+=(gcc)
command -v shellcheck >/dev/null || packages+=(shellcheck)
command -v redis-server >/dev/null || packages+=(redis-server)
[ ${#packages[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "deps: missing ${packages[*]}; install them (apt-get install ${packages[*]}) or run as root" >&2
		exit 1
	fi
	as_root=(sudo)
fi
if ! command -v apt-get >/dev/null; then
	echo "deps: missing ${packages[*]} and no apt-get to install them with: install them, then run again" >&2
	exit 1
fi
echo "deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q >&2
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
