#!/usr/bin/env bash
# `up.sh --node [--version V] DIR`: a real single-node Kubernetes (the version build.sh picks
# from $SERVICEPOOL_K8S_VERSION: the current release, or 1.20) on this machine (root needed):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
# kube-proxy, a CNI bridge and dnsmasq for Service names, state and logs under DIR.
# The node and the API server are 198.18.0.1 (bridge cni0), Pods 198.18.0.0/24, Services
# 198.19.0.0/16; Pods reach each other and the node, nothing else. The images from images.sh
# are imported (containerd's image store is cached across runs). Writes DIR/kubeconfig (admin)
# and DIR/image (the project image), prints the kubeconfig path as the last line.
# One node cluster at a time (fixed addresses); `down.sh DIR` stops it and undoes it all.
set -euo pipefail

DIR="${1:?usage: up.sh --node DIR}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
die() { echo "up.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "node mode needs root (network, cgroups, containers)"
DIR="$(realpath -m "$DIR")"
[[ -f "$DIR/pids" ]] && die "$DIR already holds a cluster; run down.sh $DIR first"

started=$SECONDS
VERSION="$(k8s_version "${SERVICEPOOL_K8S_VERSION:-current}")" || exit 2
BIN="$("$HERE/build.sh" --version "$VERSION" | tail -n 1)"
ETCD="$(etcd_binary "$VERSION" "$BIN")"
CNI_BIN="$(dpkg -L containernetworking-plugins 2>/dev/null |
  awk '/\/bridge$/ { sub(/\/bridge$/, ""); dir = $0 } END { print dir }')"
for tool in "$ETCD" "$CNI_BIN/bridge" containerd runc ctr iptables nft conntrack dnsmasq jq; do
  command -v "$tool" >/dev/null || die "$tool missing; run e2e/cluster/install-deps.sh"
done
SOCKET="$DIR/containerd/containerd.sock"
(( ${#SOCKET} < 100 )) || die "$DIR is too long a path for containerd's socket"

# One node at a time: claimed by a symlink (atomic), released by down.sh.
if [[ -L "$NODE_CLAIM" && ! -f "$(readlink "$NODE_CLAIM")/mode" ]]; then
  rm -f "$NODE_CLAIM"  # its directory is gone: a stale claim
fi
ln -sn "$DIR" "$NODE_CLAIM" 2>/dev/null || die "a node cluster is already up under" \
  "$(readlink "$NODE_CLAIM") (one at a time); stop it with down.sh $(readlink "$NODE_CLAIM")"
if ip link show cni0 >/dev/null 2>&1; then
  rm -f "$NODE_CLAIM"
  die "cni0 already exists (left over, or another cluster): remove it first"
fi
mkdir -p "$DIR"
echo node > "$DIR/mode"

trap 'fail "line $LINENO failed: $BASH_COMMAND"' ERR

IMAGE="$("$HERE/images.sh" build | tail -n 1)"

# What down.sh restores or removes: kernel settings the node changes (ip_forward here, the
# kubelet's panic and memory tunables, kube-proxy's route_localnet), the nftables tables that
# existed, and the directories outside DIR that containerd, CNI and the kubelet create.
sysctl -e "${NODE_SYSCTLS[@]}" > "$DIR/sysctl.saved"
nft list tables > "$DIR/nft-tables.saved"
for path in "${NODE_OUTSIDE_PATHS[@]}"; do
  [[ -e "$path" ]] || echo "$path"
done > "$DIR/created-paths"

# Network: the bridge first (its address is the node's and the API server's), Service IPs that
# were not translated stay on it (and leave no trace, below), and pods forward nowhere but to each
# other.
ip link add cni0 type bridge
ip addr add "$NODE_IP/24" dev cni0
ip link set cni0 up
ip route replace "$SERVICE_CIDR" dev cni0
for rule in "FORWARD ! -i cni0" "FORWARD ! -o cni0" "INPUT -i cni0 ! -d $CLUSTER_CIDR"; do
  # shellcheck disable=SC2086  # the rule is words
  iptables -w -t mangle -A $rule -m comment --comment "$NODE_RULE_COMMENT" -j DROP
done
# A packet to a Service IP that kube-proxy has not translated (the Service is newer than its
# rules) must leave no conntrack entry. Let through, its SYN goes out on cni0 and fails with "No
# route to host", and conntrack keeps the untranslated entry, refreshed by every later SYN from
# the same client port: whichever later connection reuses that port fails the same way, minutes
# after the rules exist. From the host it is refused at once (filter OUTPUT, after kube-proxy's
# DNAT); from a Pod it is dropped (mangle FORWARD, ahead of the CNI plugin's accepts), and the
# SYN sent again a second later finds the rules.
iptables -w -t mangle -A FORWARD -d "$SERVICE_CIDR" -m conntrack ! --ctstate DNAT \
  -m comment --comment "$NODE_RULE_COMMENT" -j DROP
iptables -w -A OUTPUT -d "$SERVICE_CIDR" -p tcp -m conntrack ! --ctstate DNAT \
  -m comment --comment "$NODE_RULE_COMMENT" -j REJECT --reject-with tcp-reset
iptables -w -A OUTPUT -d "$SERVICE_CIDR" -m conntrack ! --ctstate DNAT \
  -m comment --comment "$NODE_RULE_COMMENT" -j REJECT
sysctl -qw net.ipv4.ip_forward=1

# Certificates: one CA signs the API server's serving certificate and its client certificate
# for the kubelets; the kubelet serves a self-signed one. Service accounts get their own key.
PKI="$DIR/pki"
mkdir -p "$PKI"
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${newkey[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 30 \
  -subj /CN=servicepool-node-ca 2>/dev/null
issue() {  # name subject extensions
  openssl req "${newkey[@]}" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -out "$PKI/$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
names="IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes"
names+=",DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue apiserver /CN=kube-apiserver "subjectAltName=$names
extendedKeyUsage=serverAuth"
issue kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client extendedKeyUsage=clientAuth
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/sa.key" 2>/dev/null
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# One token per component, with the identity the default RBAC and the Node authorizer expect.
declare -A TOKENS
: > "$DIR/tokens.csv"
for entry in "admin admin system:masters" "kube-controller-manager system:kube-controller-manager" \
    "kube-scheduler system:kube-scheduler" "kubelet system:node:$NODE_NAME system:nodes" \
    "kube-proxy system:kube-proxy"; do
  read -r name user group <<< "$entry"
  TOKENS[$name]="$(openssl rand -hex 16)"
  echo "${TOKENS[$name]},$user,$user${group:+,$group}" >> "$DIR/tokens.csv"
done
echo "${TOKENS[admin]}" > "$DIR/admin.token"
kubeconfig() {  # file token
  cat > "$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: user
  user:
    token: $2
contexts:
- name: node
  context: {cluster: node, user: user, namespace: default}
current-context: node
KUBECONFIG
}
kubeconfig "$DIR/kubeconfig" "${TOKENS[admin]}"
for name in kube-controller-manager kube-scheduler kubelet kube-proxy; do
  kubeconfig "$DIR/$name.kubeconfig" "${TOKENS[$name]}"
done


# Flags only v1.20 has: insecure ports, on unless turned off (later releases removed them).
APISERVER_FLAGS=() PORT_FLAGS=()
if [[ "$VERSION" == 1.20 ]]; then APISERVER_FLAGS=(--insecure-port 0) PORT_FLAGS=(--port 0); fi
read -r ETCD_PORT PEER_PORT < <(free_ports 2)
start_etcd "$ETCD" "$ETCD_PORT" "$PEER_PORT"

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 "${APISERVER_FLAGS[@]}" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --token-auth-file "$DIR/tokens.csv" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --kubelet-client-certificate "$PKI/kubelet-client.crt" \
  --kubelet-client-key "$PKI/kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" \
  --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --allow-privileged=true \
  --enable-priority-and-fairness=false

# containerd: images (root) in the cache, so they survive; everything else under DIR. Pulls go
# to a proxy that refuses at once: every image comes from images.sh.
mkdir -p "$DIR/containerd" "$DIR/cni/net.d"
cat > "$DIR/containerd/config.toml" <<TOML
version = 2
root = "$SERVICEPOOL_CACHE/containerd"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$SOCKET"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: no negative oom_score_adj; no AppArmor in this kernel.
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$DIR/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$DIR/cni/net.d"
TOML
cat > "$DIR/cni/net.d/10-servicepool.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "servicepool",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$DIR/cni/ipam", "subnet": "$POD_CIDR",
              "gateway": "$NODE_IP", "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
start containerd env -u NO_PROXY -u no_proxy \
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
  containerd --config "$DIR/containerd/config.toml"

# Service names for pods: dnsmasq on the node address with no upstream, fed by node-dns.py.
mkdir -p "$DIR/dns"
: > "$DIR/dns/hosts"
start dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file="$DIR/dns/dnsmasq.pid" \
  --user=root --no-resolv --no-hosts --addn-hosts="$DIR/dns/hosts" --local=/cluster.local/ \
  --bind-interfaces --listen-address="$NODE_IP" --log-facility=-
DNSMASQ_PID=$!

wait_for() {  # seconds description command...: poll until the command succeeds
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "$what not ready after $1 s"
    sleep 0.2
  done
}
api() {
  curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer ${TOKENS[admin]}" "https://$NODE_IP:6443$1"
}

wait_for 30 containerd ctr -a "$SOCKET" version
remove_containers "$SOCKET"  # left in the persistent store by a run that ended abruptly
"$HERE/images.sh" import "$SOCKET" >/dev/null
wait_for 60 kube-apiserver api /readyz

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
  --leader-elect=false "${PORT_FLAGS[@]}" --secure-port 0 \
  --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" \
  --root-ca-file "$PKI/ca.crt" \
  --controllers '*,-nodeipam,-csrsigning' \
  --flex-volume-plugin-dir "$DIR/kubelet/volume-plugins"
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$DIR/kube-scheduler.kubeconfig" --leader-elect=false "${PORT_FLAGS[@]}" --secure-port 0

# The kubelet: cgroupfs, no negative OOM scores (see containerd), served only to the API server
# (client certificate) and to token holders it may ask the API about; never evicts or collects
# images, which could not be pulled again; its AWS credential provider must not ask the cloud
# metadata address (off this machine) for credentials.
cat > "$DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
podCIDR: $POD_CIDR
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
oomScoreAdj: 0
nodeStatusUpdateFrequency: 4s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  {memory.available: 50Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
YAML
if [[ "$VERSION" == current ]]; then
  # These hosts have cgroup v1, which current kubelets refuse unless told; the runtime and the
  # plugin directory are configuration now, the sandbox image is containerd's alone.
  cat >> "$DIR/kubelet.yaml" <<YAML
failCgroupV1: false
containerRuntimeEndpoint: unix://$SOCKET
volumePluginDir: $DIR/kubelet/volume-plugins
YAML
  KUBELET_FLAGS=()
else
  KUBELET_FLAGS=(--container-runtime remote --container-runtime-endpoint "unix://$SOCKET"
                 --volume-plugin-dir "$DIR/kubelet/volume-plugins"
                 --pod-infra-container-image "$PAUSE_IMAGE")
fi
start kubelet env AWS_EC2_METADATA_DISABLED=true "$BIN/kubelet" \
  --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" "${KUBELET_FLAGS[@]}" \
  --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" \
  --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki"

# kube-proxy: iptables mode, rules rewritten at once on every change (tests create a Service and
# use it); leaves the conntrack table size and timeouts as they are.
cat > "$DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
mode: iptables
iptables: {minSyncPeriod: 0s}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $CLUSTER_CIDR
nodePortAddresses: [$NODE_IP/32]
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
start kube-proxy "$BIN/kube-proxy" --config "$DIR/kube-proxy.yaml"

start node-dns python3 "$HERE/node-dns.py" "https://$NODE_IP:6443" "$PKI/ca.crt" \
  "$DIR/admin.token" "$DIR/dns/hosts" "$DNSMASQ_PID"

node_ready() {
  [[ "$(api "/api/v1/nodes/$NODE_NAME" |
         jq -r '.status.conditions[]? | select(.type == "Ready") | .status')" == True ]]
}
# Pods can be created once the default ServiceAccount exists.
wait_for 60 "the node" node_ready
wait_for 30 "the default ServiceAccount" api /api/v1/namespaces/default/serviceaccounts/default
wait_for 10 "Service names" grep -q " kubernetes.default.svc.cluster.local$" "$DIR/dns/hosts"
echo "$IMAGE" > "$DIR/image"
echo "up.sh: node $NODE_NAME Ready in $((SECONDS - started)) s; image $IMAGE (in $DIR/image)" >&2
echo "$DIR/kubeconfig"
