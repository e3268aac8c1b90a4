#!/usr/bin/env bash
# Build kube-score (the chart's and the rendered pool's lint, tests/chart/test_kube_score.py)
# from its published Go module with Go 1.26, at the version modules/kube-score/go.mod requires,
# and cache it. Prints the binary's path as the last line. Idempotent: a cached binary returns
# at once (a cold build takes 1-2 minutes on 2 cores). `--cached`: only print the path of a
# cached binary, and exit 3 without building when there is none.
set -euo pipefail

MODULE="$(cd "$(dirname "$0")" && pwd)/modules/kube-score"
VERSION="$(awk '$1 == "github.com/zegl/kube-score" { print $2; exit }' "$MODULE/go.mod")"
CACHE="${SERVICEPOOL_KUBE_SCORE_CACHE:-$HOME/.cache/servicepool/kube-score-$VERSION}"
if [[ -x "$CACHE/kube-score" ]]; then
  echo "$CACHE/kube-score"
  exit 0
fi
[[ "${1:-}" != --cached ]] || { echo "build-kube-score.sh: no kube-score $VERSION in $CACHE" >&2; exit 3; }

GO="${SERVICEPOOL_GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ "$("$GO" env GOVERSION 2>/dev/null)" == go1.2[6-9]* ]] \
  || { echo "build-kube-score.sh: $GO is not Go 1.26 or newer (set SERVICEPOOL_GO)" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
echo "build-kube-score.sh: kube-score $VERSION with $("$GO" version)" >&2
mkdir -p "$CACHE.tmp"
(cd "$MODULE" && nice -n 19 "$GO" build -p 2 -trimpath \
  -ldflags "-s -w -X main.version=$VERSION" -o "$CACHE.tmp/" github.com/zegl/kube-score/cmd/kube-score)
rm -rf "$CACHE"
mv "$CACHE.tmp" "$CACHE"
echo "$CACHE/kube-score"
