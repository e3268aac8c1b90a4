#!/usr/bin/env bash
# For users with Docker: a kind cluster running servicepool for real (proxy Pods included).
#   e2e/kind.sh            create the cluster, build and load the image, install the chart
#   e2e/kind.sh delete     remove the cluster
# Then run the suites against it:
#   KUBECONFIG="$(kind get kubeconfig-path 2>/dev/null || echo ~/.kube/config)" make test-integration
set -euo pipefail

CLUSTER="${KIND_CLUSTER:-servicepool}"
IMAGE="${IMAGE:-servicepool:dev}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

for tool in kind docker kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind.sh: $tool is required" >&2; exit 1; }
done

if [[ "${1:-}" == "delete" ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"
helm upgrade --install servicepool "$ROOT/charts/servicepool" \
  --namespace servicepool-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never --wait
echo "kind.sh: servicepool is installed in kind-$CLUSTER."
echo "Run the integration tests against it with:"
echo "  KUBECONFIG=\$HOME/.kube/config make test-integration"
