# Shared by the cluster scripts (sourced, not run).

# The URI of the Debian mirror this machine's apt uses for SUITE (the first one listed, from
# the deb822 *.sources files or the one-line *.list files); empty when apt has none.
debian_mirror() {
  local suite="$1" found="" file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    found+="$(awk -v suite="$suite" 'BEGIN { RS = "" } {
        types = uris = suites = ""
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^Types:/) types = " " substr(lines[i], 7) " "
          if (lines[i] ~ /^URIs:/) uris = substr(lines[i], 6)
          if (lines[i] ~ /^Suites:/) suites = " " substr(lines[i], 8) " "
        }
        if (types ~ /[ \t]deb[ \t]/ && suites ~ ("[ \t]" suite "[ \t]")) {
          split(uris, u, " ")
          print u[1]
        }
      }' "$file")"$'\n'
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    found+="$(sed -E 's/\[[^]]*\]//' "$file" |
      awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }')"$'\n'
  done
  found="${found#"${found%%[![:space:]]*}"}"
  printf '%s\n' "${found%%$'\n'*}"
}

SERVICEPOOL_CACHE="${SERVICEPOOL_CACHE:-$HOME/.cache/servicepool}"

# The supported Kubernetes version a --version value names: "current" (the default: the release
# built from Go modules, build-current.sh) or "1.20" (v1.20.2 from Debian's source).
k8s_version() {  # value
  case "$1" in
    ""|current|latest) echo current ;;
    1.20|1.20.2|v1.20.2) echo 1.20 ;;
    *) echo "unknown Kubernetes version '$1': 1.20 or current" >&2; return 1 ;;
  esac
}

# The etcd a version runs with: the one built beside the current release, Debian's for 1.20.
etcd_binary() {  # version binary-dir
  if [[ "$1" == current ]]; then echo "$2/etcd"; else command -v etcd || echo /usr/bin/etcd; fi
}
# The pod sandbox image, built by images.sh: containerd's sandbox_image, the kubelet's pod
# infra image.
PAUSE_IMAGE="localhost/servicepool-pause:3.2"

# Remove every container (and its task) from the node's containerd at SOCKET, and CNI's cache
# of their network results (kept outside DIR whatever the configuration says).
remove_containers() {
  local ctr=(ctr -a "$1" -n k8s.io) containers id
  containers="$("${ctr[@]}" containers ls -q 2>/dev/null)" || return 0
  [[ -n "$containers" ]] || return 0
  # shellcheck disable=SC2086  # one id a word
  "${ctr[@]}" tasks delete --force $containers >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  "${ctr[@]}" containers delete $containers >/dev/null 2>&1 || true
  for id in $containers; do rm -f /var/lib/cni/results/*-"$id"-*; done
}

# The node cluster (node-up.sh, node-down.sh): fixed addresses, so one at a time.
NODE_NAME="servicepool-node"
NODE_IP="198.18.0.1"
POD_CIDR="198.18.0.0/24"
CLUSTER_CIDR="198.18.0.0/16"
SERVICE_CIDR="198.19.0.0/16"
API_SERVICE_IP="198.19.0.1"
NODE_CLAIM="/run/servicepool-node"
NODE_RULE_COMMENT="servicepool-node"
# Kernel settings the node changes: ip_forward (node-up.sh), the kubelet's tunables, kube-proxy's
# route_localnet. Saved on up, restored on down.
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory
              vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
              kernel.keys.root_maxbytes)
# Where containerd, CNI and the kubelet write outside DIR whatever their configuration says;
# down.sh removes those that did not exist before up.
NODE_OUTSIDE_PATHS=(/var/log/pods /var/log/containers /var/lib/cni /var/lib/cni/results
                    /var/lib/kubelet /var/lib/kubelet/device-plugins
                    /run/containerd /run/containerd/s)

# Start a component detached, logged to $DIR/NAME.log, its pid in $DIR/pids and its command
# line in $DIR/NAME.cmd (restart.sh reruns it).
start() {  # name, command...
  local name="$1"; shift
  printf '%q ' "$@" > "$DIR/$name.cmd"
  setsid nohup "$@" >> "$DIR/$name.log" 2>&1 < /dev/null &
  echo "$name $!" >> "$DIR/pids"
}

# N loopback ports nobody listens on right now, on one line.
free_ports() {  # n
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
}

# A single-member etcd for tests, on loopback, its data in $DIR/etcd.
start_etcd() {  # etcd-binary client-port peer-port
  mkdir -p "$DIR/etcd"
  start etcd "$1" --name default --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$2" \
    --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "http://127.0.0.1:$3" \
    --initial-advertise-peer-urls "http://127.0.0.1:$3" \
    --initial-cluster "default=http://127.0.0.1:$3" \
    --unsafe-no-fsync
}

# Give up starting a cluster: say why, show each component's last log lines, tear down.
fail() {
  echo "up.sh: $1" >&2
  for log in "$DIR"/*.log; do
    echo "--- tail of $log" >&2
    tail -n 25 "$log" >&2 || true
  done
  "$HERE/down.sh" "$DIR" >/dev/null 2>&1 || true
  exit 1
}
