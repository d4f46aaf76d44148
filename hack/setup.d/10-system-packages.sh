#!/usr/bin/env bash
# Debian packages: docker engine (image builds), debootstrap (base images), containerd/runc/CNI
# (the local cluster's node), prometheus (rule and dashboard query tests), prometheus-alertmanager (the
# local monitoring stack's Alertmanager image, hack/cluster/monitoring.sh).
source "$(dirname "$0")/../lib.sh"
pkgs=(docker.io debootstrap containerd runc containernetworking-plugins conntrack socat iptables prometheus prometheus-alertmanager shellcheck)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
((${#missing[@]} == 0)) && exit 0
[[ $EUID -eq 0 ]] || die "missing Debian packages ${missing[*]}: run 'sudo make setup' once"
step "installing Debian packages: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
