#!/usr/bin/env bash
# Stop the control plane started by `up.sh DIR` and remove its state. Harmless to repeat.
# A node cluster (`up.sh --node DIR`) is node-down.sh's.
set -uo pipefail

DIR="${1:?usage: down.sh DIR}"
[[ -d "$DIR" ]] || exit 0
[[ "$(cat "$DIR/mode" 2>/dev/null)" == node ]] && exec "$(dirname "$0")/node-down.sh" "$DIR"
if [[ -f "$DIR/pids" ]]; then
  # Stop in reverse order: controller-manager, apiserver, etcd.
  pids=$(awk '{print $2}' "$DIR/pids" | tac)
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 50); do
    alive=0
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done
fi
rm -rf "$DIR"
exit 0
