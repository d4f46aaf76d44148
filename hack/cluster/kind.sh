#!/usr/bin/env bash
# CLUSTER=kind make cluster-up|cluster-down: the path for users with internet access.
# Creates a kind cluster from hack/kind.yaml, then installs metrics-server and Traefik (public
# images) configured like the local cluster's: Traefik answers Ingresses and the Gateway
# kube-system/modelops (Gateway API CRDs from hack/cluster/gateway-api.sh) on host port 30080.
# Untested on the project's offline machines (no registry there to pull kind's node image from).
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/versions.sh"
NAME=modelops
command -v kind >/dev/null || die "kind is not installed: go install sigs.k8s.io/kind@v0.33.0"
case "${1:-up}" in
  up)
    grep -qx "$NAME" <<<"$(kind get clusters 2>/dev/null || true)" || kind create cluster --config "$ROOT/hack/kind.yaml"
    kubectl config use-context "kind-$NAME" >/dev/null
    kubectl apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/$METRICS_SERVER_VERSION/components.yaml"
    kubectl -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
    # the Gateway API's CRDs first: the Traefik manifest holds its GatewayClass and Gateway
    bash "$ROOT/hack/cluster/gateway-api.sh" install
    # the local cluster's Traefik manifest, on Traefik's public image
    sed -e "s|@TRAEFIK_IMAGE@|docker.io/traefik:${TRAEFIK_VERSION}|" -e 's|imagePullPolicy: Never|imagePullPolicy: IfNotPresent|' \
      -e 's|@INGRESS_PORT@|30080|g' -e 's|@PING_PORT@|30081|g' "$ROOT/hack/cluster/manifests/traefik.yaml" | kubectl apply -f -
    for d in metrics-server traefik; do kubectl -n kube-system rollout status "deployment/$d" --timeout 300s; done
    step "kind cluster $NAME up: KUBECONFIG context kind-$NAME; ingress http://127.0.0.1:30080/"
    ;;
  down) kind delete cluster --name "$NAME" ;;
esac
