#!/usr/bin/env bash
# Ensures a docker daemon answers; starts one in the background when none does.
source "$(dirname "$0")/lib.sh"
docker info >/dev/null 2>&1 && exit 0
step "starting dockerd (log: .data/dockerd.log)"
nohup dockerd >"$DATA/dockerd.log" 2>&1 &
wait_for 60 "dockerd (see .data/dockerd.log)" docker info
