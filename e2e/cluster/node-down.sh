#!/usr/bin/env bash
# `down.sh DIR` for a node cluster (node-up.sh): stop every process and container, unmount,
# remove the bridge, the packet filter rules and chains (ours, portmap's, kube-proxy's and the
# kubelet's), restore the kernel settings, remove what was created outside DIR, then DIR.
# Harmless to repeat. No `set -e`: a teardown presses on past what is already gone.
set -uo pipefail

DIR="$(cd "${1:?usage: down.sh DIR}" 2>/dev/null && pwd)" || exit 0
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
SOCKET="$DIR/containerd/containerd.sock"

# A pid still running a command of this cluster (each names DIR): not a pid reused by an
# unrelated process since, nor an exited one its new parent has yet to reap.
ours() { [[ "$(tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline")" == *"$DIR"* ]]; }

stop() {  # names...: TERM, up to 5 s to exit, then KILL
  local name pid pids=() left
  [[ -f "$DIR/pids" ]] || return 0
  for name in "$@"; do
    for pid in $(awk -v n="$name" '$1 == n { print $2 }' "$DIR/pids"); do
      ours "$pid" && pids+=("$pid") && kill -TERM "$pid" 2>/dev/null
    done
  done
  for _ in $(seq 1 50); do
    left=()
    for pid in "${pids[@]}"; do ours "$pid" && left+=("$pid"); done
    (( ${#left[@]} )) || return 0
    sleep 0.1
  done
  kill -KILL "${left[@]}" 2>/dev/null
}

# Nothing may start or restart containers while they are removed.
stop node-dns dnsmasq kube-controller-manager kube-scheduler kubelet kube-proxy

# Containers, straight through containerd: no waiting on the kubelet, which may leave a Pod
# deleted right after it started Terminating for a minute.
[[ -S "$SOCKET" ]] && remove_containers "$SOCKET"
stop containerd kube-apiserver etcd

# Whatever survived containerd: processes in the kubelet's cgroups, shims of this containerd.
find /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null |
  sort -u | xargs -r kill -KILL 2>/dev/null
for cmdline in /proc/[0-9]*/cmdline; do
  args="$(tr '\0' ' ' 2>/dev/null < "$cmdline")"
  if [[ "$args" == *"-address $SOCKET "* ]]; then
    pid="${cmdline#/proc/}"
    kill -KILL "${pid%/cmdline}" 2>/dev/null
  fi
done
sleep 0.2  # for the killed to leave their cgroups
for hierarchy in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
  [[ -d "$hierarchy" ]] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
done

# Mounts under DIR (the kubelet's root, pod volumes, network namespaces, container rootfs),
# deepest first.
awk -v dir="$DIR" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/self/mounts | sort -r -u |
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null
  done

# Network: the bridge and what is left attached to it, then the packet filter rules and chains
# (KUBE-* from kube-proxy and the kubelet, CNI-HOSTPORT-* and CNI-DN-* from portmap, ours by
# comment), per table in one iptables-restore; then the nftables tables that did not exist
# before up, if now empty.
for port in $(ip -o link show master cni0 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }')
do
  ip link delete "$port" 2>/dev/null
done
ip link delete cni0 2>/dev/null
for tool in iptables ip6tables; do
  "$tool-save" 2>/dev/null | awk -v comment="$NODE_RULE_COMMENT" '
    /^\*/ { table = $0; n = 0; m = 0; next }
    /^:(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ { chains[++n] = substr($1, 2); next }
    /^-A / && $2 !~ /^(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ &&
      ($0 ~ /-j (KUBE-|CNI-HOSTPORT-|CNI-DN-)/ || index($0, "--comment " comment) > 0) {
      sub(/^-A/, "-D"); deletes[++m] = $0; next }
    /^COMMIT/ {
      if (n + m == 0) next
      print table
      for (i = 1; i <= m; i++) print deletes[i]
      for (i = 1; i <= n; i++) print "-F " chains[i]
      for (i = 1; i <= n; i++) print "-X " chains[i]
      print "COMMIT" }' | "$tool-restore" --noflush -w 2>/dev/null
done
if [[ -f "$DIR/nft-tables.saved" ]]; then
  nft list tables 2>/dev/null | while read -r _ family table; do
    case "$family" in ip) tool=iptables ;; ip6) tool=ip6tables ;; *) continue ;; esac
    grep -qx "table $family $table" "$DIR/nft-tables.saved" && continue
    # Empty: no rules, no chains but the built-in ones. (Read whole first: piped into an early
    # exiting `grep -q`, the save would fail with SIGPIPE under pipefail.)
    rules="$("$tool-save" -t "$table" 2>/dev/null)"
    grep -qvE '^(#|\*|COMMIT|:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) )' <<< "$rules" \
      || nft delete table "$family" "$table" 2>/dev/null
  done
fi
for range in "$CLUSTER_CIDR" "$SERVICE_CIDR"; do
  conntrack -D -d "$range" >/dev/null 2>&1
  conntrack -D -s "$range" >/dev/null 2>&1
done
[[ -f "$DIR/sysctl.saved" ]] && sysctl -q -e -p "$DIR/sysctl.saved" >/dev/null

if [[ -f "$DIR/created-paths" ]]; then
  while read -r path; do rm -rf --one-file-system "$path"; done < "$DIR/created-paths"
fi
[[ "$(readlink "$NODE_CLAIM" 2>/dev/null)" == "$DIR" ]] && rm -f "$NODE_CLAIM"
rm -rf --one-file-system "$DIR"
exit 0
