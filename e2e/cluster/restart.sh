#!/usr/bin/env bash
# Stop one component of the control plane under DIR and start it again with the same
# command line (for chaos tests):  restart.sh DIR kube-apiserver [SECONDS_DOWN]
set -euo pipefail

DIR="${1:?usage: restart.sh DIR COMPONENT [SECONDS_DOWN]}"
NAME="${2:?usage: restart.sh DIR COMPONENT [SECONDS_DOWN]}"
DOWN="${3:-0}"
[[ -f "$DIR/$NAME.cmd" ]] || { echo "restart.sh: no $NAME under $DIR" >&2; exit 1; }

pid=$(awk -v n="$NAME" '$1 == n {print $2}' "$DIR/pids" | tail -n 1)
if [[ -n "$pid" ]]; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
fi
sleep "$DOWN"
setsid nohup bash -c "exec $(cat "$DIR/$NAME.cmd")" >> "$DIR/$NAME.log" 2>&1 < /dev/null &
echo "$NAME $!" >> "$DIR/pids"
