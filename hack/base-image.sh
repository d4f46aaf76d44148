#!/usr/bin/env bash
# Builds local/python-base:bookworm (Debian bookworm + Python 3.11) with debootstrap, since no
# registry can be reached. The rootfs tarball is cached in .cache so only the first run pays.
source "$(dirname "$0")/lib.sh"
IMAGE=${BASE_IMAGE_TAG:-local/python-base:bookworm}
bash "$ROOT/hack/docker.sh"
docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0
tarball="$CACHE/rootfs/python-base-bookworm.tar"
if [[ ! -s "$tarball" ]]; then
  step "debootstrap bookworm + python3 (about 75 s, once)"
  rm -rf "$CACHE/rootfs/bookworm" && mkdir -p "$CACHE/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$CACHE/rootfs/bookworm" \
    >"$CACHE/rootfs/debootstrap.log" 2>&1 || die "debootstrap failed: see $CACHE/rootfs/debootstrap.log"
  rm -rf "$CACHE/rootfs/bookworm"/var/cache/apt/archives/*.deb "$CACHE/rootfs/bookworm"/var/lib/apt/lists/*
  tar -C "$CACHE/rootfs/bookworm" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$CACHE/rootfs/bookworm"
fi
step "importing $IMAGE"
docker import "$tarball" "$IMAGE" >/dev/null
