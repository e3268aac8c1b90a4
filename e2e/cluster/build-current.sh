#!/usr/bin/env bash
# Build the current Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy), the etcd it is tested with, and the helm CLI from their published Go modules with
# Go 1.26, and cache them. The versions are the ones modules/*/go.mod require. Prints the binary
# directory as the last line (helm is in it too). Idempotent: with cached binaries it returns
# at once. Module downloads go to Go's module cache.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODULES="$HERE/modules"
required() {  # module-dir module-path: the version go.mod requires
  awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit } $1 == m { print $2; exit }' \
    "$MODULES/$1/go.mod"
}
VERSION="$(required kubernetes k8s.io/kubernetes)"
HELM_VERSION="$(required helm helm.sh/helm/v4)"
CACHE="${SERVICEPOOL_K8S_CURRENT_CACHE:-$HOME/.cache/servicepool/kubernetes-$VERSION}"

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
PACKAGES=("${BINARIES[@]/#/k8s.io/kubernetes/cmd/}" go.etcd.io/etcd/server/v3)

cached=1
for binary in "${BINARIES[@]}" etcd helm; do [[ -x "$CACHE/$binary" ]] || cached=0; done
[[ "$(cat "$CACHE/helm.version" 2>/dev/null)" == "$HELM_VERSION" ]] || cached=0
if (( cached )); then
  echo "$CACHE"
  exit 0
fi

# Go 1.26 for modules, never Debian's 1.19 (build.sh --version 1.20 uses that one).
GO="${SERVICEPOOL_GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ "$("$GO" env GOVERSION 2>/dev/null)" == go1.2[6-9]* ]] \
  || { echo "build-current.sh: $GO is not Go 1.26 or newer (set SERVICEPOOL_GO)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Two cores shared with everything else: one package at a time per core, at low priority.
build() {  # module-dir ldflags out-dir packages...
  local dir="$1" ldflags="$2" out="$3"; shift 3
  (cd "$MODULES/$dir" && nice -n 19 "$GO" build -p 2 -trimpath -ldflags "-s -w $ldflags" -o "$out/" "$@")
}

minor="${VERSION#v1.}"; minor="${minor%%.*}"
ldflags=""
for package in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $package.gitVersion=$VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  ldflags+=" -X $package.gitTreeState=clean"
done

mkdir -p "$CACHE.tmp"
started=$SECONDS
echo "build-current.sh: Kubernetes $VERSION and etcd with $("$GO" version) (10-25 minutes cold on 2 cores)" >&2
build kubernetes "$ldflags" "$CACHE.tmp" "${PACKAGES[@]}"
mv "$CACHE.tmp/server" "$CACHE.tmp/etcd"  # go names it after go.etcd.io/etcd/server
echo "build-current.sh: helm $HELM_VERSION" >&2
build helm "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "$CACHE.tmp" \
  helm.sh/helm/v4/cmd/helm
echo "$HELM_VERSION" > "$CACHE.tmp/helm.version"
echo "build-current.sh: built in $((SECONDS - started)) s" >&2
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$CACHE"
