# The local cluster's layout and settings; sourced by hack/cluster/*.sh (after hack/lib.sh).
source "$ROOT/hack/cluster/versions.sh"
C="$DATA/cluster"                 # all runtime state; wiped by cluster-up, kept by cluster-down for logs
PKI="$C/pki" LOGS="$C/logs" PIDS="$C/pids"
KUBECONFIG_OUT="$C/kubeconfig"    # admin kubeconfig other tools use
RUN_DIR=/run/modelops-cluster     # sockets (short paths): containerd
CTR_SOCK="$RUN_DIR/containerd.sock"
CTR=(ctr -a "$CTR_SOCK" -n k8s.io)
API_PORT=${MODELOPS_API_PORT:-6443}
INGRESS_PORT=${MODELOPS_INGRESS_PORT:-30080}   # Traefik's web entry point on the host
# the monitoring stack (hack/cluster/monitoring.sh): on unless MODELOPS_MONITORING=0; NodePorts on the host
MONITORING=${MODELOPS_MONITORING:-1}
PROMETHEUS_PORT=${MODELOPS_PROMETHEUS_PORT:-30090}
ALERTMANAGER_PORT=${MODELOPS_ALERTMANAGER_PORT:-30093}
SERVICE_CIDR=10.96.0.0/16 SERVICE_IP=10.96.0.1 DNS_IP=10.96.0.10
CLUSTER_CIDR=10.244.0.0/16 POD_CIDR=10.244.0.0/24
BRIDGE=mops0 CNI_NET=modelops
# add-ons (hack/cluster/manifests/NAME.yaml) cluster-up installs; the tests need all three
ADDONS=${MODELOPS_ADDONS:-coredns metrics-server traefik}
has_addon() { [[ " $ADDONS " == *" $1 "* ]]; }
CGROUP_ROOT=modelops              # kubelet's cgroup root: every pod lives under /sys/fs/cgroup/*/modelops
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
# the node's address: the source of the route out, or (no route out, as offline machines may have)
# the first global IPv4 address; up.sh names MODELOPS_NODE_IP when neither exists
node_ip() {
  local a
  a=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}') || true
  [[ -n "$a" ]] || a=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub("/.*", "", $4); print $4}') || true
  echo "${a%%$'\n'*}"
}
NODE_IP=${MODELOPS_NODE_IP:-$(node_ip)}
PAUSE_IMAGE=local/pause:$PAUSE_VERSION
BASE_IMAGE=${BASE_IMAGE_TAG:-local/python-base:bookworm}
# local images are named by the binary's content key, so a rebuilt binary gets a new image
kube_image() { echo "local/kube:$(basename "$(dirname "$(kube_bin)")")"; }
traefik_image() { echo "local/traefik:$(basename "$(dirname "$(traefik_bin)")")"; }

# The local cluster is "up" when its admin kubeconfig exists and the API server answers.
local_cluster_up() { [[ -s "$KUBECONFIG_OUT" ]] && kubectl --kubeconfig "$KUBECONFIG_OUT" get --raw /readyz >/dev/null 2>&1; }
