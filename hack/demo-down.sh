#!/usr/bin/env bash
# make demo-down: undo `make demo` and leave nothing running (the caches in .cache stay).
source "$(dirname "$0")/lib.sh"
source "$ROOT/hack/cluster/env.sh"
[[ -z "${KUBECONFIG:-}" && -f "$DATA/cluster/kubeconfig" ]] && export KUBECONFIG="$DATA/cluster/kubeconfig"
if kubectl get --raw /readyz >/dev/null 2>&1; then
  step "deleting the demo's ModelDeployments and namespace, uninstalling the release"
  kubectl delete namespace modelops-demo --ignore-not-found --wait=true --timeout=120s
  helm uninstall modelops -n modelops-system --wait --timeout 3m 2>/dev/null || true
  kubectl delete namespace modelops-system --ignore-not-found --wait=true --timeout=120s
fi
if [[ -z "${CLUSTER:-}" ]] && local_cluster_up; then
  step "stopping the local cluster"
  bash "$ROOT/hack/cluster/down.sh"
elif [[ "${CLUSTER:-}" == kind ]]; then
  bash "$ROOT/hack/cluster/kind.sh" down
fi
rm -rf "$DATA/demo"
step "demo removed"
