#!/usr/bin/env bash
# Build and cache the Kubernetes binaries of one supported version; print their directory as the
# last line. `build.sh` (or `--version current`): the current release, from Go modules with
# Go 1.26 (build-current.sh; etcd and helm in the same directory). `build.sh --version 1.20`:
# v1.20.2 from Debian's source with Debian's Go 1.19 (build-1.20.sh; etcd is Debian's).
# $SERVICEPOOL_K8S_VERSION is the default version. Idempotent: cached binaries return at once.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
version="${SERVICEPOOL_K8S_VERSION:-current}"
while (( $# )); do
  case "$1" in
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    *) echo "usage: build.sh [--version 1.20|current]" >&2; exit 2 ;;
  esac
done
version="$(k8s_version "$version")" || exit 2
exec "$HERE/build-$version.sh"
