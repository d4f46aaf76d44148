#!/usr/bin/env bash
# Memory the local cluster uses now: proportional set size (PSS, so the multi-call binary's pages
# shared by six processes count once) of every process of it: host components, containerd's shims,
# and every process in the pods' cgroups. Prints one line per part and the total in MiB.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
pss() { awk '/^Pss:/{s+=$2} END{print int(s/1024)}' "${@/%//smaps_rollup}" 2>/dev/null || echo 0; }
total=0
for f in "$PIDS"/*.pid; do
  [[ -e "$f" ]] || die "the local cluster is not running"
  p=$(cat "$f"); m=$(pss "/proc/$p"); total=$((total + m))
  printf '%-24s %5d MiB\n' "$(basename "$f" .pid)" "$m"
done
shims=() pods=()
for p in /proc/[0-9]*; do
  grep -qsF -- "$CTR_SOCK" "$p/cmdline" && [[ "${p#/proc/}" != "$(cat "$PIDS/containerd.pid")" ]] && shims+=("$p")
done
for p in $(find /sys/fs/cgroup/memory/"$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do pods+=("/proc/$p"); done
m=$( ((${#shims[@]})) && pss "${shims[@]}" || echo 0); total=$((total + m)); printf '%-24s %5d MiB\n' "shims (${#shims[@]})" "$m"
m=$( ((${#pods[@]})) && pss "${pods[@]}" || echo 0); total=$((total + m)); printf '%-24s %5d MiB\n' "pod processes (${#pods[@]})" "$m"
printf '%-24s %5d MiB\n' total "$total"
