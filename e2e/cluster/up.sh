#!/usr/bin/env bash
# Start a fresh local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager)
# on free loopback ports, with its state under DIR. Writes DIR/kubeconfig and prints its path as
# the last line. No container engine needed. Several control planes can run side by side; stop
# one with `down.sh DIR`.
# `--version current` (the default, or $SERVICEPOOL_K8S_VERSION) runs the current release built
# from Go modules; `--version 1.20` runs v1.20.2 built from Debian's source (build.sh).
# `up.sh --node DIR` starts a real node instead (kubelet, containers, Services): node-up.sh.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
usage="usage: up.sh [--node] [--version 1.20|current] DIR"
node=0 version="${SERVICEPOOL_K8S_VERSION:-current}" DIR=""
while (( $# )); do
  case "$1" in
    --node) node=1; shift ;;
    --version) version="${2:?$usage}"; shift 2 ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
[[ -n "$DIR" ]] || { echo "$usage" >&2; exit 2; }
version="$(k8s_version "$version")" || exit 2
export SERVICEPOOL_K8S_VERSION="$version"
(( node )) && exec "$HERE/node-up.sh" "$DIR"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [[ -f "$DIR/pids" ]]; then
  echo "up.sh: $DIR already holds a control plane; run down.sh $DIR first" >&2
  exit 1
fi

BIN="$("$HERE/build.sh" --version "$version" | tail -n 1)"
ETCD="$(etcd_binary "$version" "$BIN")"
[[ -x "$ETCD" ]] || { echo "up.sh: etcd missing; run e2e/cluster/install-deps.sh" >&2; exit 1; }

read -r ETCD_PORT PEER_PORT API_PORT < <(free_ports 3)

# A non-loopback address to advertise (a loopback one only fills the log with endpoint errors).
ADVERTISE="$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^127\.' | grep -v ':' | head -n 1 || true)"
ADVERTISE="${ADVERTISE:-192.0.2.1}"

# Flags only v1.20 has: its insecure port is on unless turned off (later releases removed both).
VERSION_FLAGS=() KCM_FLAGS=()
if [[ "$version" == 1.20 ]]; then VERSION_FLAGS=(--insecure-port 0) KCM_FLAGS=(--port 0); fi

TOKEN="$(openssl rand -hex 16)"
echo "$TOKEN,admin,admin,system:masters" > "$DIR/tokens.csv"
openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
mkdir -p "$DIR/certs"


start_etcd "$ETCD" "$ETCD_PORT" "$PEER_PORT"

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --secure-port "$API_PORT" "${VERSION_FLAGS[@]}" \
  --advertise-address "$ADVERTISE" \
  --cert-dir "$DIR/certs" \
  --token-auth-file "$DIR/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$DIR/sa.pub" \
  --service-account-signing-key-file "$DIR/sa.key" \
  --service-cluster-ip-range 198.19.0.0/16 \
  --allow-privileged=true \
  --enable-priority-and-fairness=false

deadline=$((SECONDS + 60))
until curl -ksf -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; do
  (( SECONDS < deadline )) || fail "kube-apiserver not ready after 60 s"
  sleep 0.3
done

# The apiserver's self-signed certificate names 127.0.0.1: clients can verify it.
cat > "$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$DIR/certs/apiserver.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
KUBECONFIG

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$DIR/kubeconfig" \
  --leader-elect=false \
  "${KCM_FLAGS[@]}" --secure-port 0 \
  --service-account-private-key-file "$DIR/sa.key" \
  --root-ca-file "$DIR/certs/apiserver.crt" \
  --cluster-signing-duration 24h \
  --controllers '*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-csrsigning,-ttl'

# Pods can be created once the default ServiceAccount exists.
deadline=$((SECONDS + 60))
until curl -ksf -H "Authorization: Bearer $TOKEN" \
    "https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default" >/dev/null 2>&1; do
  (( SECONDS < deadline )) || fail "the default ServiceAccount did not appear after 60 s"
  sleep 0.3
done
echo "$DIR/kubeconfig"
