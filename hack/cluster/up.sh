#!/usr/bin/env bash
# make cluster-up: a real single-node Kubernetes on this machine, built from the Go module proxy.
#   etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kubelet + kube-proxy run as
#   host processes (one multi-call binary); Debian's containerd/runc/CNI plugins run the pods;
#   CoreDNS, metrics-server and Traefik (ingress, Gateway API) run as pods from images built here;
#   the Gateway API's standard-channel CRDs come from the Go module sigs.k8s.io/gateway-api.
# TLS everywhere, RBAC + Node authorization, service accounts. Admin kubeconfig: .data/cluster/kubeconfig.
# With KUBECONFIG set to another cluster (or CLUSTER=existing|kind), it uses that cluster instead.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
t_start=$SECONDS

case "${CLUSTER:-}" in
  kind) exec bash "$ROOT/hack/cluster/kind.sh" up ;;
  existing) ;;
  local | "") if [[ -z "${CLUSTER:-}" && -n "${KUBECONFIG:-}" && "$KUBECONFIG" != "$KUBECONFIG_OUT" ]]; then CLUSTER=existing; fi ;;
  *) die "CLUSTER=$CLUSTER: use local (default), kind or existing" ;;
esac
if [[ "${CLUSTER:-}" == existing ]]; then
  kubectl get --raw /readyz >/dev/null || die "KUBECONFIG=${KUBECONFIG:-~/.kube/config}: the API server does not answer"
  step "using the existing cluster from KUBECONFIG=${KUBECONFIG:-~/.kube/config} ($(kubectl config current-context))"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "the local cluster runs kubelet and containerd: run as root"
[[ -n "$NODE_IP" ]] || die "cannot find this machine's IP (set MODELOPS_NODE_IP)"
if local_cluster_up; then
  step "local cluster already up; KUBECONFIG=$KUBECONFIG_OUT"
  exit 0
fi
bash "$ROOT/hack/cluster/down.sh" --quiet # leftovers of a run that was killed
rm -rf "$C" # fresh state every time (containerd's image store is kept in .data/cluster-containerd)
mkdir -p "$C" && echo "${MODELOPS_CLUSTER_OWNER:-}" >"$C/owner" # see down.sh --owner

# --- binaries and images ----------------------------------------------------------------------
has_addon traefik || export BUILD=kube
bash "$ROOT/hack/cluster/build.sh"
# The monitoring stack (monitoring.sh up) builds after the cluster's own binaries (it reuses their Go
# caches) and installs as soon as the cluster can take it, in the background: only its wait at the end is
# on this script's path, and MODELOPS_MONITORING_WAIT=0 (make test, make demo) leaves it to `monitoring.sh
# ensure`, after the project's images.
if [[ "$MONITORING" != 0 ]]; then
  mkdir -p "$LOGS"
  MODELOPS_PARENT_PID=$$ bash "$ROOT/hack/cluster/monitoring.sh" up >"$LOGS/monitoring.log" 2>&1 &
  monitoring_job=$! && echo "$monitoring_job" >"$C/monitoring.pid"
fi
bash "$ROOT/hack/cluster/gateway-api.sh" fetch
KUBE=$(kube_bin)
mkdir -p "$C"/{bin,etcd,kubelet,pod-logs,cni/net.d,cni/ipam,cni/cache,containerd} "$PKI" "$LOGS" "$PIDS" "$RUN_DIR"
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do ln -sf "$KUBE" "$C/bin/$c"; done

# start NAME CMD...: a background process in its own session, logged to .data/cluster/logs/NAME.log
start() {
  local name=$1; shift
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}
alive() { kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null || die "$1 exited: see ${LOGS#"$ROOT"/}/$1.log
$(tail -20 "$LOGS/$1.log")"; }
# wait_up SECONDS NAME COMMAND...: like wait_for, failing fast when the process NAME died
wait_up() {
  local deadline=$((SECONDS + $1)) name=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    alive "$name"
    ((SECONDS < deadline)) || die "timed out waiting for $name: see ${LOGS#"$ROOT"/}/$name.log"
    sleep 0.5
  done
}

# --- host settings pods need -----------------------------------------------------------------
modprobe br_netfilter 2>/dev/null || true
modprobe overlay 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || die "bridge netfilter unavailable (modprobe br_netfilter)"
sysctl -qw net.bridge.bridge-nf-call-iptables=1
for d in /sys/fs/cgroup/*/; do
  [[ -e "$d/cgroup.procs" ]] && ! [[ -e "$d/cgroup.controllers" ]] && mkdir -p "$d$CGROUP_ROOT"
done

# --- PKI and configuration ---------------------------------------------------------------------
step "PKI and configuration (${C#"$ROOT"/})"
source "$ROOT/hack/cluster/pki.sh"
write_pki
cp "$PKI/admin.kubeconfig" "$KUBECONFIG_OUT"
export KUBECONFIG="$KUBECONFIG_OUT"

cat >"$C/containerd/config.toml" <<TOML
version = 2
root = "$DATA/cluster-containerd"
state = "$RUN_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$RUN_DIR/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # this machine may not lower oom_score_adj (a container): keep pods at or above containerd's
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni/net.d"
    max_conf_num = 1
TOML

cat >"$C/cni/net.d/10-$CNI_NET.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$C/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables", "_": "lets pod traffic through a FORWARD policy of DROP (docker sets one)"}
  ]
}
JSON

cat >"$C/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $C/pod-logs
failSwapOn: false
healthzBindAddress: 127.0.0.1
# images are imported, never pulled: image GC must never remove them; disk eviction off
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
serializeImagePulls: false
maxPods: 110
# a pod's mounted ConfigMaps and Secrets follow changes within ~10 s instead of up to a minute: the configs
# the Prometheus Operator generates for Prometheus and Alertmanager reach them that fast
syncFrequency: 10s
YAML

cat >"$C/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# leave the host's conntrack sysctls alone (they may be read-only in a container)
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML

# --- containerd ------------------------------------------------------------------------------
step "containerd (Debian's, own socket $CTR_SOCK)"
start containerd containerd --config "$C/containerd/config.toml"
wait_up 30 containerd "${CTR[@]}" version
# containers a killed run left in containerd's store
for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || true; done
bash "$ROOT/hack/cluster/images.sh" cluster

# --- control plane ---------------------------------------------------------------------------
step "etcd, kube-apiserver, kube-controller-manager, kube-scheduler ($KUBE_VERSION)"
# --unsafe-no-fsync: the store is thrown away on every cluster-up; fsync only slows tests down
start etcd "$C/bin/etcd" --name "$NODE_NAME" --data-dir "$C/etcd" \
  --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
  --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
  --client-cert-auth --trusted-ca-file "$PKI/etcd-ca.crt" --unsafe-no-fsync --log-level warn
wait_up 30 etcd curl -sf http://127.0.0.1:2381/health

start kube-apiserver "$C/bin/kube-apiserver" \
  --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port "$API_PORT" \
  --etcd-servers https://127.0.0.1:2379 --etcd-cafile "$PKI/etcd-ca.crt" \
  --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" --client-ca-file "$PKI/ca.crt" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
  --requestheader-username-headers X-Remote-User --enable-aggregator-routing \
  --profiling=false --event-ttl 30m
wait_up 90 kube-apiserver kubectl get --raw /readyz
# the Gateway API's CRDs (~8 s to create and establish) install while the rest of the node comes up
bash "$ROOT/hack/cluster/gateway-api.sh" install >"$LOGS/gateway-api.log" 2>&1 &
gateway_api=$!

common=(--authentication-kubeconfig "$PKI/ITEM.kubeconfig" --authorization-kubeconfig "$PKI/ITEM.kubeconfig"
  --kubeconfig "$PKI/ITEM.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false --profiling=false
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt")
start kube-controller-manager "$C/bin/kube-controller-manager" "${common[@]//ITEM/controller-manager}" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" --root-ca-file "$PKI/ca.crt" \
  --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
  --allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR" --controllers '*,bootstrapsigner,tokencleaner' \
  --horizontal-pod-autoscaler-sync-period 10s
start kube-scheduler "$C/bin/kube-scheduler" "${common[@]//ITEM/scheduler}"

# --- node ------------------------------------------------------------------------------------
step "kubelet and kube-proxy (node $NODE_NAME, $NODE_IP)"
start kubelet "$C/bin/kubelet" --config "$C/kubelet/config.yaml" --kubeconfig "$PKI/kubelet.kubeconfig" \
  --root-dir "$C/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
start kube-proxy "$C/bin/kube-proxy" --config "$C/kube-proxy.yaml"
node_ready() { [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
wait_up 120 kubelet node_ready
alive kube-proxy; alive kube-controller-manager; alive kube-scheduler
t_ready=$((SECONDS - t_start))
step "node $NODE_NAME Ready after ${t_ready} s"

# --- add-ons: CoreDNS, metrics-server, Traefik -------------------------------------------------
wait "$gateway_api" || die "the Gateway API CRDs did not install: see ${LOGS#"$ROOT"/}/gateway-api.log
$(tail -20 "$LOGS/gateway-api.log")"
step "add-ons: $ADDONS (Traefik ingress and the Gateway kube-system/modelops on host port $INGRESS_PORT)"
render() {
  sed -e "s|@KUBE_IMAGE@|$(kube_image)|g" -e "s|@TRAEFIK_IMAGE@|$(traefik_image)|g" -e "s|@DNS_IP@|$DNS_IP|g" \
    -e "s|@INGRESS_PORT@|$INGRESS_PORT|g" -e "s|@PING_PORT@|$((INGRESS_PORT + 1))|g" -e "s|@NODE_NAME@|$NODE_NAME|g" "$@"
}
for d in $ADDONS; do render "$ROOT/hack/cluster/manifests/$d.yaml"; echo ---; done | kubectl apply -f - >/dev/null
for d in $ADDONS; do
  kubectl -n kube-system rollout status "deployment/$d" --timeout 180s >/dev/null ||
    die "add-on $d did not become ready: kubectl -n kube-system describe pods -l app=$d"
done
has_addon metrics-server && wait_for 120 "the metrics API (metrics-server)" kubectl get --raw /apis/metrics.k8s.io/v1beta1/nodes
echo "$INGRESS_PORT" >"$C/ingress-port"
t_all=$((SECONDS - t_start))
t_monitoring=null
if [[ -n "${monitoring_job:-}" && "${MODELOPS_MONITORING_WAIT:-1}" != 0 ]]; then
  step "waiting for the monitoring stack (log: ${LOGS#"$ROOT"/}/monitoring.log; MODELOPS_MONITORING=0 skips it)"
  wait "$monitoring_job" || die "the monitoring stack did not come up: see ${LOGS#"$ROOT"/}/monitoring.log
$(tail -20 "$LOGS/monitoring.log")"
  t_monitoring=$((SECONDS - t_start))
fi
echo "{\"node_ready_s\": $t_ready, \"all_ready_s\": $t_all, \"monitoring_ready_s\": $t_monitoring}" >"$C/up-times.json"

monitoring_note=""
if [[ -n "${monitoring_job:-}" && "$t_monitoring" == null ]]; then monitoring_note=", the monitoring stack installing in the background"
elif [[ -n "${monitoring_job:-}" ]]; then monitoring_note=", monitoring stack after ${t_monitoring} s"; fi
step "cluster up in ${t_all} s (node Ready after ${t_ready} s$monitoring_note)"
kubectl get nodes -o wide
echo "--- $KUBECONFIG_OUT (keys redacted here; the file holds them):"
kubectl config view --minify
cat <<MSG

  export KUBECONFIG=$KUBECONFIG_OUT
  ingress (Traefik):  http://127.0.0.1:$INGRESS_PORT/
  Gateway API:        Gateway kube-system/modelops, listener web (HTTPRoutes), on the same port
  load an image:      hack/load-image.sh IMAGE      (or: make images)
  stop:               make cluster-down
MSG
if [[ -n "${monitoring_job:-}" ]]; then bash "$ROOT/hack/cluster/monitoring.sh" urls; fi
