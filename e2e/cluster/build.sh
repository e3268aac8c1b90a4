#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager v1.20.2 from Debian's kubernetes source
# package (its orig tarball vendors every dependency) and cache them. Prints the binary
# directory as the last line. Idempotent: with cached binaries it returns at once.
set -euo pipefail

VERSION="1.20.2"
DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${SERVICEPOOL_K8S_CACHE:-$HOME/.cache/servicepool/kubernetes-v$VERSION}"

if [[ -x "$CACHE/kube-apiserver" && -x "$CACHE/kube-controller-manager" ]]; then
  echo "$CACHE"
  exit 0
fi

for tool in go dpkg-source rsync; do
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
echo "build.sh: compiling (about 5-6 minutes on 2 cores)" >&2
cd .go/src/k8s.io/kubernetes
GOPATH="$PWD/../../.." GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2

OUT="_output/local/bin/linux/$(go env GOARCH)"
[[ -x "$OUT/kube-apiserver" ]] || OUT="$(dirname "$(find _output -name kube-apiserver -type f | head -n 1)")"
mkdir -p "$CACHE.tmp"
cp "$OUT/kube-apiserver" "$OUT/kube-controller-manager" "$CACHE.tmp/"
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$CACHE"
