"""The chart on a real Kubernetes (default: the local cluster, .data/cluster/kubeconfig; KUBECONFIG
overrides). The Prometheus Operator's CRDs are installed from their real schemas (the
prometheus-operator Go module's CRD YAML, fetched through the Go module proxy), then:

- each rendering (default, all-on, namespaced) passes `kubectl apply --dry-run=server`: the API server
  validates every object against its schema, the CRDs included;
- `helm install` with the locally built images (make images) gives a Ready operator and an MLflow that
  answers, `helm test` passes, `helm upgrade` rolls the operator, `helm uninstall` leaves nothing;
- with MLflow's basic auth on, `helm test` sees anonymous requests refused and the operator's
  credentials accepted, before and after an upgrade (the generated password survives it).

The install runs in namespaced mode so that it never reconciles ModelDeployments of other tests
running on the same cluster; the cluster-wide RBAC is proven by the dry-run of the default rendering.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .. import support
from ..support import SHARED_GATEWAY, free_port
from .conftest import CHART, ROOT, VALUES_FILES, helm, template_args, tool

pytestmark = pytest.mark.cluster

KUBECONFIG = os.environ.get("KUBECONFIG") or str(ROOT / ".data/cluster/kubeconfig")
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
# the release the local cluster's monitoring stack runs (its CRDs must not be replaced by another's)
PROMETHEUS_OPERATOR_VERSION = re.search(r"^PROMETHEUS_OPERATOR_VERSION=(\S+)",
                                        (ROOT / "hack/cluster/versions.sh").read_text(), re.M).group(1)
MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules", "alertmanagerconfigs")
IMAGE_TAG = os.environ.get("IMAGE_TAG", "dev")
IMAGES = (f"modelops/operator:{IMAGE_TAG}", f"modelops/inference:{IMAGE_TAG}", f"modelops/training:{IMAGE_TAG}")
# the local images, namespaced mode (never reconciling other tests' ModelDeployments), no StorageClass,
# the local cluster's shared Gateway as the routes' default parent
LOCAL_SETS = ["--set", f"operator.image.tag={IMAGE_TAG}", "--set", "operator.image.pullPolicy=Never",
              "--set", f"operator.servingImage.tag={IMAGE_TAG}", "--set", f"exportImage.tag={IMAGE_TAG}",
              "--set", "rbac.namespaced=true", "--set", "mlflow.persistence.enabled=false",
              "--set", f"operator.gateway.namespace={SHARED_GATEWAY.namespace}",
              "--set", f"operator.gateway.name={SHARED_GATEWAY.name}",
              "--set", f"operator.gateway.sectionName={SHARED_GATEWAY.section_name}"]


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120):
    res = subprocess.run([tool("kubectl"), "--kubeconfig", KUBECONFIG, *args], input=stdin, text=True,
                         capture_output=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res


def kget(*args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def khelm(*args: str, check: bool = True, timeout: float = 600):
    return helm(*args, "--kubeconfig", KUBECONFIG, check=check, timeout=timeout)


wait_until = functools.partial(support.wait_until, timeout=180, interval=2,
                               ignore=(AssertionError, subprocess.SubprocessError, ValueError, KeyError))


@pytest.fixture(scope="module")
def cluster() -> str:
    res = kubectl("get", "--raw", "/readyz", check=False, timeout=20)
    if res.returncode != 0:
        msg = f"no cluster answers with {KUBECONFIG}: start it with `make cluster-up`. {res.stderr.strip()}"
        if os.environ.get("MODELOPS_CLUSTER_TESTS") == "required":
            pytest.fail(msg)
        pytest.skip(msg)
    return KUBECONFIG


def prometheus_operator_crds() -> list[Path]:
    """The CRD YAML of the prometheus-operator release, from the Go module cache (downloaded once)."""
    go = shutil.which("go")
    if not go:
        pytest.skip("go not installed: needed to fetch the prometheus-operator CRDs from the Go module proxy")
    res = subprocess.run([go, "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = Path(json.loads(res.stdout)["Dir"]) / "example/prometheus-operator-crd"
    return [folder / f"monitoring.coreos.com_{name}.yaml" for name in MONITORING_CRDS]


@pytest.fixture(scope="module")
def crds(cluster) -> None:
    """The Prometheus Operator's ServiceMonitor/PodMonitor/PrometheusRule CRDs and kopf's peering CRDs,
    installed for real (cluster-scoped, left in place: other releases may use them)."""
    for path in [*prometheus_operator_crds(), CHART / "crds/kopf.dev_peerings.yaml"]:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = [f"{n}.monitoring.coreos.com" for n in MONITORING_CRDS] + [
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


def crd_args() -> list[str]:
    """On a fresh cluster Helm installs the ModelDeployment CRD itself (what a user's first install does).
    Where another run already applied it with kubectl (field manager "kubectl"), Helm 3.22's apply of
    its crds/ conflicts with that manager: bring it up to date the way the README's upgrade does, and
    let Helm skip it."""
    if kubectl("get", "crd", "modeldeployments.modelops.io", check=False).returncode != 0:
        return []
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds/modelops.io_modeldeployments.yaml"))
    return ["--skip-crds"]


@pytest.fixture
def namespace(cluster) -> Iterator[str]:
    ns = f"chart-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("values", VALUES_FILES.values(), ids=VALUES_FILES.keys())
def test_rendering_passes_server_side_dry_run(crds, namespace, values):
    # --include-crds: the API server also validates the chart's CRDs (as an update where they exist)
    rendered = helm(*template_args(values, namespace=namespace), "--include-crds",
                    "--kube-version", kubectl_server_version()).stdout
    res = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered, check=False)
    assert res.returncode == 0, res.stderr
    applied = [line for line in res.stdout.splitlines() if "(server dry run)" in line]
    kinds = {line.split("/")[0].split(".")[0] for line in applied}
    assert {"servicemonitor", "podmonitor", "prometheusrule", "configmap", "service"} <= kinds, res.stdout
    assert len(applied) == rendered.count("\nkind: ") + rendered.startswith("kind: "), res.stdout


def kubectl_server_version() -> str:
    version = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    return version.lstrip("v").split("-")[0].split("+")[0]


def images_in_docker() -> None:
    docker = shutil.which("docker")
    missing = [image for image in IMAGES
               if not docker or subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode]
    if missing:
        msg = f"images {missing} not built: run `make images` (Dockerfile.operator, .inference, .training)"
        if os.environ.get("MODELOPS_CLUSTER_TESTS") == "required":
            pytest.fail(msg)
        pytest.skip(msg)
    res = subprocess.run(["bash", str(ROOT / "hack/load-image.sh"), *IMAGES], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "KUBECONFIG": KUBECONFIG})
    assert res.returncode == 0, res.stdout + res.stderr


def pods(ns: str, component: str) -> list[dict]:
    return kget("-n", ns, "pods", "-l", f"app.kubernetes.io/component={component}")["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


@contextlib.contextmanager
def port_forward(namespace: str, service: str, port: int) -> Iterator[str]:
    local = free_port()
    proc = subprocess.Popen([tool("kubectl"), "--kubeconfig", KUBECONFIG, "-n", namespace, "port-forward",
                             f"svc/{service}", f"{local}:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{local}"

        def healthy() -> bool:
            try:
                return httpx.get(url + "/health", timeout=2).status_code == 200
            except httpx.TransportError:  # kubectl is not listening yet
                return False

        wait_until(f"port-forward to {service}", healthy, timeout=60, interval=1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def serve_a_model_through_the_stack(namespace: str, release: str) -> None:
    """Register a real model in the chart's MLflow, then let the chart's operator export and serve it:
    proves the tracking URIs, MLflow's --allowed-hosts and --serve-artifacts, the serving image value,
    RBAC in namespaced mode, and that inference pods carry what the PodMonitor selects."""
    from modelops_training.registry import set_alias
    from modelops_training.train import TrainConfig, train

    with port_forward(namespace, f"{release}-modelops-mlflow", 5000) as mlflow_url:
        result = train(TrainConfig(dataset="breast_cancer", epochs=2, seed=0, register="breast-cancer",
                                   progress=False, tracking_uri=mlflow_url))
        set_alias("breast-cancer", "champion", result.version, tracking_uri=mlflow_url)
        manifest = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": "bc", "namespace": namespace},
                    "spec": {"model": {"name": "breast-cancer", "alias": "champion"},
                             "serving": {"imagePullPolicy": "Never"},
                             # the run's first inference pod: slow to start on a cold node
                             "rollout": {"progressDeadlineSeconds": 300}}}
        kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

        def phase():
            status = kget("-n", namespace, "modeldeployment", "bc").get("status") or {}
            assert status.get("phase") not in ("Failed", "RolledBack"), status
            return status if status.get("phase") == "Ready" else None

        status = wait_until("ModelDeployment bc Ready", phase, timeout=420, interval=3)
        assert status["modelVersion"] == str(result.version)
    selector = "app.kubernetes.io/name=modelops-serve,app.kubernetes.io/managed-by=modelops-operator"
    [pod] = kget("-n", namespace, "pods", "-l", selector)["items"]
    assert pod["spec"]["containers"][0]["image"] == f"modelops/inference:{IMAGE_TAG}"
    assert any(p["name"] == "http" for p in pod["spec"]["containers"][0]["ports"])
    metrics = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}:8080"
                      "/proxy/metrics").stdout
    assert 'modelops_inference_model_ready{model_name="bc"' in metrics
    kubectl("delete", "-n", namespace, "modeldeployment", "bc", "--wait=true", timeout=120)


def test_install_test_upgrade_uninstall(crds, namespace):
    images_in_docker()
    release = "mo"
    sets = LOCAL_SETS
    try:
        khelm("install", release, str(CHART), "-n", namespace, *sets, *crd_args(), "--wait", "--timeout", "8m")
        [operator] = pods(namespace, "operator")
        assert ready(operator)
        [mlflow] = pods(namespace, "mlflow")
        assert ready(mlflow)
        # the operator really runs with the chart's settings: kopf health and metrics answer
        metrics = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/{release}-modelops-operator:api"
                          "/proxy/metrics").stdout
        assert "modelops_operator_reconciles_total" in metrics
        assert kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/{release}-modelops-operator:"
                       "health/proxy/healthz").returncode == 0
        # MLflow answers its API through its Service name (--allowed-hosts)
        out = khelm("test", release, "-n", namespace, "--logs", "--timeout", "8m", timeout=540).stdout
        assert "registry answers" in out and "/healthz 200" in out, out
        serve_a_model_through_the_stack(namespace, release)

        before = operator["metadata"]["uid"]
        khelm("upgrade", release, str(CHART), "-n", namespace, *sets, "--set", "operator.aliasPollSeconds=15",
              "--wait", "--timeout", "5m")
        [operator] = wait_until("the upgraded operator", lambda: [
            p for p in pods(namespace, "operator") if p["metadata"]["uid"] != before and ready(p)])
        env = {e["name"]: e.get("value") for e in operator["spec"]["containers"][0]["env"]}
        assert env["MODELOPS_ALIAS_POLL_SECONDS"] == "15"
        assert env["MODELOPS_GATEWAY"] == SHARED_GATEWAY.env
        history = json.loads(khelm("history", release, "-n", namespace, "-o", "json").stdout)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    finally:
        res = khelm("uninstall", release, "-n", namespace, "--wait", "--timeout", "3m", check=False)
    assert res.returncode == 0, res.stderr
    # pods go with their owners, a little after uninstall returns
    wait_until("nothing of the release left in its namespace", lambda: kubectl(
        "get", "all,configmaps,secrets,roles,rolebindings,serviceaccounts,pvc,kopfpeerings", "-n", namespace,
        "-l", f"app.kubernetes.io/instance={release}", "-o", "name").stdout.split() == [], timeout=120)
    cluster_left = kubectl("get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={release}",
                           "-o", "name").stdout.split()
    assert not [n for n in cluster_left if f"{release}-modelops" in n]


def helm_test_sees_mlflow_auth(release: str, namespace: str) -> None:
    out = khelm("test", release, "-n", namespace, "--logs", "--timeout", "8m", timeout=540).stdout
    for line in ("auth: anonymous request: 401 (expected 401)", "auth: operator's credentials: 200 (expected 200)",
                 "registry answers"):
        assert line in out, out


def test_mlflow_auth_refuses_anonymous_requests_and_keeps_its_password_across_an_upgrade(crds, namespace):
    images_in_docker()
    release = "ma"
    sets = [*LOCAL_SETS, "--set", "mlflow.auth.enabled=true"]
    secret = f"{release}-modelops-mlflow-auth"
    try:
        khelm("install", release, str(CHART), "-n", namespace, *sets, *crd_args(), "--wait", "--timeout", "8m")
        generated = kget("-n", namespace, "secret", secret)["data"]
        helm_test_sees_mlflow_auth(release, namespace)
        khelm("upgrade", release, str(CHART), "-n", namespace, *sets, "--set", "operator.aliasPollSeconds=15",
              "--wait", "--timeout", "5m")
        # lookup kept the password MLflow created its admin with (its user store keeps the first one)
        assert kget("-n", namespace, "secret", secret)["data"] == generated
        helm_test_sees_mlflow_auth(release, namespace)
    finally:
        res = khelm("uninstall", release, "-n", namespace, "--wait", "--timeout", "3m", check=False)
    assert res.returncode == 0, res.stderr
