#!/usr/bin/env bash
# `build.sh --version 1.20`: build the Kubernetes v1.20.2 binaries (control plane:
# kube-apiserver, kube-controller-manager; node: kubelet, kube-scheduler, kube-proxy) from
# Debian's kubernetes source package (its orig tarball vendors every dependency) with Debian's
# Go 1.19, called by its own path, and cache them. Prints the binary directory as the last line.
# Idempotent: with cached binaries it returns at once. etcd for this version is Debian's.
set -euo pipefail

VERSION="1.20.2"
DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${SERVICEPOOL_K8S_CACHE:-$HOME/.cache/servicepool/kubernetes-v$VERSION}"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
GO_ROOT="${SERVICEPOOL_GO119:-/usr/lib/go-1.19}"

cached=1
for binary in "${BINARIES[@]}"; do [[ -x "$CACHE/$binary" ]] || cached=0; done
if (( cached )); then
  echo "$CACHE"
  exit 0
fi

[[ -x "$GO_ROOT/bin/go" ]] || { echo "build.sh: $GO_ROOT/bin/go missing (golang-1.19-go); run e2e/cluster/install-deps.sh" >&2; exit 1; }
export PATH="$GO_ROOT/bin:$PATH" GOROOT="$GO_ROOT" GOTOOLCHAIN=local
for tool in dpkg-source rsync; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool missing; run e2e/cluster/install-deps.sh" >&2; exit 1; }
done
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d "$REFLECT2" ]] || { echo "build.sh: $REFLECT2 missing (golang-github-modern-go-reflect2-dev)" >&2; exit 1; }

WORK="$(dirname "$CACHE")/build-$$"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
cd "$WORK"
echo "build.sh: fetching the kubernetes $DEB_VERSION source package" >&2
apt-get source --download-only "kubernetes=$DEB_VERSION" >&2 2>/dev/null \
  || apt-get source --download-only kubernetes >&2
tar -xzf kubernetes_*.orig.tar.gz
SRC="$(find . -maxdepth 1 -mindepth 1 -type d -name 'kubernetes*' | head -n 1)"
cd "$SRC"

# reflect2 as vendored crashes (SIGSEGV in map iteration) with Go 1.19: use Debian's 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
rsync -a --exclude go.mod "$REFLECT2/" vendor/github.com/modern-go/reflect2/

# GOPATH mode, as Debian builds it.
mkdir -p .go/src/k8s.io
ln -s ../../.. .go/src/k8s.io/kubernetes
echo "build.sh: compiling with $(go version) (about 8-9 minutes on 2 cores)" >&2
cd .go/src/k8s.io/kubernetes
GOPATH="$PWD/../../.." GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
  make WHAT="$(printf 'cmd/%s ' "${BINARIES[@]}")" >&2

OUT="_output/local/bin/linux/$(go env GOARCH)"
[[ -x "$OUT/kube-apiserver" ]] || OUT="$(dirname "$(find _output -name kube-apiserver -type f | head -n 1)")"
mkdir -p "$CACHE.tmp"
for binary in "${BINARIES[@]}"; do cp "$OUT/$binary" "$CACHE.tmp/"; done
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$CACHE"
