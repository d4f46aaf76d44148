#!/usr/bin/env bash
# Builds a component's image (Dockerfile.<component>) offline-capable:
#   hack/build-image.sh COMPONENT wheels     download its wheels into .cache/wheels/COMPONENT
#                                            (again only when constraints.txt or a pyproject changed)
#   hack/build-image.sh COMPONENT [IMAGE]    wheels, the local base image, then docker build
#                                            (IMAGE defaults to modelops/COMPONENT:dev)
# COMPONENT is inference, operator or training. BASE_IMAGE overrides the base (default
# local/python-base:bookworm, built by hack/base-image.sh).
source "$(dirname "$0")/lib.sh"

component=${1:-}
case "$component" in
  # every component talks to MLflow through modelops-registry; exports run from the training image
  inference) sources=(registry inference) ;;
  operator) sources=(registry operator) ;;
  training) sources=(registry training) ;;
  *) die "usage: hack/build-image.sh inference|operator|training [wheels|IMAGE]" ;;
esac
WHEELS="$CACHE/wheels/$component"

wheels() {
  local want stamp="$WHEELS/.stamp" paths=()
  for s in "${sources[@]}"; do paths+=("$ROOT/$s"); done
  want=$(cat "$ROOT/constraints.txt" "${paths[@]/%//pyproject.toml}" | sha256sum | cut -c1-16)
  [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
  step "downloading the $component image's wheels into ${WHEELS#"$ROOT"/} (once per dependency change)"
  rm -rf "$WHEELS.tmp" && mkdir -p "$WHEELS.tmp"
  # setuptools: the image builds the project's own packages from source with --no-index.
  "$VENV/bin/pip" download -q --only-binary=:all: -c "$ROOT/constraints.txt" -d "$WHEELS.tmp" \
    "${paths[@]}" "setuptools>=68"
  rm -f "$WHEELS.tmp"/modelops*  # the project itself comes from the source tree
  rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
  echo "$want" >"$stamp"
  du -sh "$WHEELS" | awk '{print "  " $1 " of wheels"}'
}

case "${2:-}" in
  wheels) wheels ;;
  *)
    image=${2:-modelops/$component:dev}
    wheels
    if [[ -z "${BASE_IMAGE:-}" ]]; then
      BASE_IMAGE=local/python-base:bookworm
      bash "$ROOT/hack/base-image.sh"
    fi
    # The build context is exactly what the Dockerfile copies: the classic builder (no BuildKit in
    # Debian's docker.io) would otherwise send the whole tree to the daemon on every build.
    context() {
      tar -C "$ROOT" -c --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --exclude='__pycache__' --exclude='*.egg-info' --exclude='build' "$@"
    }
    # Same inputs, same image: skip the build (and the reload into the cluster that a new ID causes).
    inputs=$({ docker image inspect -f '{{.Id}}' "$BASE_IMAGE"; cat "$WHEELS/.stamp"
      context "Dockerfile.$component" constraints.txt "${sources[@]}"; } | sha256sum | cut -c1-16)
    old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    if [[ -n "$old" && "$(docker image inspect -f '{{index .Config.Labels "modelops.inputs"}}' "$image")" == "$inputs" ]]; then
      step "$image is up to date (inputs $inputs)"
      exit 0
    fi
    # Built from these inputs under another tag (make images' :dev, the tests' :test): the same image,
    # tagged instead of built again (the wheel server's port is a build arg: docker's layer cache misses,
    # and the training image took 200 s per test run)
    same=$(docker images -q --no-trunc --filter "label=modelops.inputs=$inputs")
    if [[ -n "$same" ]]; then
      docker tag "${same%%$'\n'*}" "$image"
      [[ -n "$old" ]] && { docker image rm "$old" >/dev/null 2>&1 || true; }  # untagged now, unless in use
      step "$image tagged from the image of the same inputs ($inputs)"
      exit 0
    fi
    build() {
      context "Dockerfile.$component" constraints.txt "${sources[@]}" |
        docker build -q -f "Dockerfile.$component" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
          --build-arg "WHEELS_URL=$WHEELS_URL" --label "modelops.inputs=$inputs" -t "$image" - >/dev/null
    }
    step "docker build Dockerfile.$component -> $image (base $BASE_IMAGE, $(disk_free) disk free)"
    with_wheel_server "$WHEELS" build  # for the build's length only
    # the image this build replaced is now untagged: gone, or every rebuild stays on disk
    new=$(docker image inspect -f '{{.Id}}' "$image")
    [[ -n "$old" && "$old" != "$new" ]] && { docker image rm "$old" >/dev/null 2>&1 || true; }
    docker image inspect -f "{{.Size}}" "$image" | awk -v i="$image" '{printf "%s: %.0f MB\n", i, $1 / 1e6}'
    ;;
esac
