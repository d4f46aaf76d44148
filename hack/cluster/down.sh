#!/usr/bin/env bash
# make cluster-down: stops the local cluster and removes everything of it from the host: processes
# (ours, by pid: pid files, our containerd's shims, every process in our pod cgroups), mounts,
# network namespaces and interfaces, iptables chains (KUBE-*, CNI-*), cgroups.
# Kept: .data/cluster (logs, for post-mortems; the next cluster-up wipes it) and the image store.
# --quiet: used by cluster-up to clear what a killed run left.
# --owner ID: only when the running cluster was started with MODELOPS_CLUSTER_OWNER=ID (hack/test.sh
# stops the cluster it started, and leaves alone one a developer had already started).
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
quiet=${1:-}
if [[ $quiet == --owner ]]; then
  [[ -s "$C/owner" && "$(cat "$C/owner")" == "${2:-}" ]] || exit 0
  quiet=""
fi
say() { [[ $quiet == --quiet ]] || step "$@"; }

if [[ "${CLUSTER:-}" == kind ]]; then exec bash "$ROOT/hack/cluster/kind.sh" down; fi
if [[ -z "${CLUSTER:-}" && -n "${KUBECONFIG:-}" && "$KUBECONFIG" != "$KUBECONFIG_OUT" || "${CLUSTER:-}" == existing ]]; then
  say "KUBECONFIG points at an existing cluster: nothing to stop"
  exit 0
fi
[[ $EUID -eq 0 ]] || die "run as root"

# stop PID...: TERM, then KILL after 10 s
stop() {
  local p deadline=$((SECONDS + 10))
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null; do
      ((SECONDS < deadline)) || { kill -KILL "$p" 2>/dev/null || true; break; }
      sleep 0.2
    done
  done
}
pid_of() { [[ -s "$PIDS/$1.pid" ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null && cat "$PIDS/$1.pid"; }

# 1. the node first (no restarts), then every container through our containerd, then the rest
say "stopping the local cluster"
for c in kubelet kube-proxy; do stop $(pid_of $c || true); done
if [[ -S "$CTR_SOCK" ]] && "${CTR[@]}" version >/dev/null 2>&1; then
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 0.5
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || true; done
fi
for c in kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do stop $(pid_of $c || true); done
rm -f "$PIDS"/*.pid 2>/dev/null || true

# 2. anything still running in our cgroups (pods), and our containerd's shims
for round in 1 2 3; do
  pids=$(find /sys/fs/cgroup/*/"$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
  for p in /proc/[0-9]*; do
    grep -qsF -- "$CTR_SOCK" "$p/cmdline" && pids+=" ${p#/proc/}"
  done
  pids=$(echo $pids | tr ' ' '\n' | sort -u | grep -v "^$$\$" || true)
  [[ -z "$pids" ]] && break
  kill -KILL $pids 2>/dev/null || true
  sleep 0.5
done
for h in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
  [[ -d "$h" ]] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
done

# 3. mounts: kubelet volumes, containerd's rootfs/shm, pod network namespaces (deepest first)
ours() { grep -E "^($C|$DATA/cluster-containerd|$RUN_DIR|/run/netns/cni-|/var/run/netns/cni-)" || true; }
for round in 1 2 3; do
  mapfile -t mnts < <(awk '{print $5}' /proc/self/mountinfo | ours | sort -r)
  ((${#mnts[@]})) || break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
rm -f /run/netns/cni-* 2>/dev/null || true
rm -rf "$RUN_DIR"
# empty folders containerd makes for shim sockets and fifos (rmdir: only when empty)
rmdir /run/containerd/s /run/containerd/fifo /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true

# 4. network: our bridge (pod veths die with their namespaces), iptables chains KUBE-* and CNI-*
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  for table in filter nat mangle raw; do
    rules=$($ipt -t $table -S 2>/dev/null) || continue
    # rules in other chains that jump to ours
    { grep -E "^-A " <<<"$rules" | grep -vE "^-A (KUBE-|CNI-)" | grep -E -- "-j (KUBE-|CNI-)" || true; } | while read -r r; do
      eval "$ipt -t $table ${r/-A /-D }" 2>/dev/null || true
    done
    chains=$(grep -oE '^-N (KUBE-|CNI-)[^ ]+' <<<"$rules" | cut -d' ' -f2 || true)
    for ch in $chains; do $ipt -t $table -F "$ch" 2>/dev/null || true; done
    for ch in $chains; do $ipt -t $table -X "$ch" 2>/dev/null || true; done
  done
done
rm -rf "/var/lib/cni/results/$CNI_NET"-* "/var/lib/cni/results/cni-loopback-"* 2>/dev/null || true
find /var/log/containers -maxdepth 1 -lname "$C/*" -delete 2>/dev/null || true
rmdir /var/lib/cni/results /var/lib/cni /var/log/containers 2>/dev/null || true # only when empty

# 5. report what, if anything, survived
left=""
for p in /proc/[0-9]*; do grep -qsF -- "$C/bin/" "$p/cmdline" && left+=" process ${p#/proc/}"; done
[[ -n "$(awk '{print $5}' /proc/self/mountinfo | ours)" ]] && left+=" mounts"
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=" $BRIDGE"
# grep -q reads a captured string, not a pipe: it exits at the first match, which under pipefail
# would fail the pipeline (SIGPIPE to the writer) and hide the leftover
grep -qE '^-N (KUBE-|CNI-)' <<<"$(iptables -t nat -S 2>/dev/null || true)" && left+=" iptables-chains"
[[ -z "$left" ]] || die "cluster-down left:$left"
say "local cluster stopped; nothing of it remains (logs kept in ${C#"$ROOT"/}/logs)"
