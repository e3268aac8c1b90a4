#!/usr/bin/env bash
# Install the Debian packages the local control plane (and the benchmarks) need.
# Idempotent and non-interactive; skips apt entirely when everything is present.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

# golang-1.19-go is Debian's Go, called by its own path (/usr/lib/go-1.19/bin/go) to build
# Debian's Kubernetes 1.20 source; any newer Go first on PATH is left alone. The last two lines
# are the node: container runtime, CNI, packet filter (nft: teardown), image tools, pod DNS.
# The last line is for tests of the docs and the chart: the Argo CD health check (lua5.1),
# promtool for the alert rules (prometheus), and the browser test of /ui (chromium). cmake and
# g++ build llama-server for the engine tier (e2e/engines/build-llama-server.sh).
PACKAGES=(etcd-server golang-1.19-go rsync jq dpkg-dev golang-github-modern-go-reflect2-dev openssl
          nginx haproxy wrk curl
          containerd runc containernetworking-plugins iptables conntrack iproute2 buildah
          nftables debootstrap dnsmasq-base gcc libc6-dev
          lua5.1 prometheus chromium chromium-driver
          cmake g++)
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

missing=()
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
# build.sh fetches Debian's kubernetes source package when a binary is missing: apt then
# needs a deb-src entry, on the mirror apt already uses.
K8S_CACHE="${SERVICEPOOL_K8S_CACHE:-$HOME/.cache/servicepool/kubernetes-v1.20.2}"
needs_src=0
for binary in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [[ -x "$K8S_CACHE/$binary" ]] || needs_src=1
done
if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  needs_src=0
fi

if [[ ${#missing[@]} -eq 0 && $needs_src -eq 0 ]]; then
  echo "install-deps.sh: all packages present"
  exit 0
fi

if [[ $needs_src -eq 1 ]]; then
  mirror="$(debian_mirror bookworm)"
  if [[ -z "$mirror" ]]; then
    echo "install-deps.sh: apt has no Debian bookworm mirror to add deb-src for" >&2
    exit 1
  fi
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    $SUDO tee -a /etc/apt/sources.list.d/debian.sources >/dev/null <<SRC

Types: deb-src
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  else
    echo "deb-src $mirror bookworm main" \
      | $SUDO tee /etc/apt/sources.list.d/servicepool-src.list >/dev/null
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps.sh: installing ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install; the tests start their own instances.
for service in nginx haproxy etcd containerd prometheus prometheus-node-exporter; do
  $SUDO service "$service" stop >/dev/null 2>&1 || true
done
echo "install-deps.sh: done"
