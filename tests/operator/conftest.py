"""End-to-end fixtures: the real local cluster, a real `mlflow server` reachable from pods, real
trained model versions and the operator running as a process against the cluster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support import SHARED_GATEWAY, free_port, mlflow_server, stop_process_group, wait_until

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = os.environ.get("KUBECONFIG") or str(ROOT / ".data/cluster/kubeconfig")
# in-process clients (modelops_operator.kube in live tests) find the same cluster as kubectl does
os.environ.setdefault("KUBECONFIG", KUBECONFIG)
SERVING_IMAGE = os.environ.get("MODELOPS_TEST_SERVING_IMAGE", "modelops/inference:dev")
EXPORT_IMAGE = os.environ.get("MODELOPS_TEST_EXPORT_IMAGE", "modelops/training:dev")
INGRESS_PORT = int(os.environ.get("MODELOPS_INGRESS_PORT", "30080"))
MODEL = "e2e-cancer"


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("kubectl", path=f"{ROOT}/.tools/bin:{os.environ['PATH']}")
    return subprocess.run([exe, "--kubeconfig", KUBECONFIG, *args], input=stdin, text=True,
                          capture_output=True, check=check, timeout=120)


def kget(kind: str, name: str, namespace: str) -> dict | None:
    res = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


@pytest.fixture(scope="session")
def cluster() -> str:
    res = kubectl("get", "--raw", "/readyz", check=False)
    assert res.returncode == 0, (
        f"no cluster answers with {KUBECONFIG}: start it with `make cluster-up` (make test does). {res.stderr}"
    )
    selector = "app.kubernetes.io/name=modelops,app.kubernetes.io/component=operator"
    installed = json.loads(kubectl("get", "deployments", "-A", "-l", selector, "-o", "json").stdout)["items"]
    cluster_wide = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in installed
                    if not any(e["name"] == "MODELOPS_WATCH_NAMESPACE" and e.get("value")
                               for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []))]
    assert not cluster_wide, (
        f"a cluster-wide modelops operator is installed ({', '.join(cluster_wide)}): it would act on the "
        "tests' ModelDeployments too; remove it first (`make demo-down` for the demo's)"
    )
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelops.io", "--timeout=60s")
    return KUBECONFIG


@pytest.fixture(scope="session")
def node_ip(cluster) -> str:
    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


@contextlib.contextmanager
def pod_reachable_registry(tmp: Path, node_ip: str) -> Iterator[dict[str, str]]:
    """A real MLflow server listening where the pods can reach it (the node's address); yields its
    URL for this host ("local") and for pods ("pods")."""
    with mlflow_server(tmp, host="0.0.0.0", also_called=(node_ip,), workers=2) as server:
        yield {"local": server.url, "pods": f"http://{node_ip}:{server.port}"}


@pytest.fixture(scope="session")
def registry(tmp_path_factory, node_ip):
    with pod_reachable_registry(tmp_path_factory.mktemp("mlflow-e2e"), node_ip) as registry:
        yield registry


@pytest.fixture(scope="session")
def versions(registry) -> dict[str, str]:
    """Two good versions of a real breast-cancer MLP and one that answers NaN; alias champion -> v1."""
    from modelops_training.registry import set_alias
    from modelops_training.train import TrainConfig, train

    made = {}
    for label, seed, sabotage in (("v1", 0, None), ("v2", 1, None), ("broken", 2, "nan")):
        result = train(TrainConfig(dataset="breast_cancer", epochs=3, seed=seed, register=MODEL,
                                   sabotage=sabotage, progress=False, tracking_uri=registry["local"]))
        made[label] = result.version
    set_alias(MODEL, "champion", made["v1"], tracking_uri=registry["local"])
    return made


class Operator:
    """The operator as a real process; restartable, so a test can kill it mid-rollout. Each test module's
    operator watches only its module's namespace, so modules (and people) can share one cluster."""

    def __init__(self, registry: dict, log_dir: Path, **env: str):
        self.api_port, self.health_port = free_port(), free_port()
        self.secret = uuid.uuid4().hex
        self.env = {
            **os.environ,
            "KUBECONFIG": KUBECONFIG,
            "MLFLOW_TRACKING_URI": registry["local"],
            "MODELOPS_POD_TRACKING_URI": registry["pods"],
            "MODELOPS_SERVING_IMAGE": SERVING_IMAGE,
            "MODELOPS_EXPORT_IMAGE": EXPORT_IMAGE,
            "MODELOPS_ALIAS_POLL_SECONDS": "5",
            "MODELOPS_WEBHOOK_SECRET": self.secret,
            "MODELOPS_API_PORT": str(self.api_port),
            "MODELOPS_HEALTH_PORT": str(self.health_port),
            # ModelDeployments' HTTPRoutes attach to the local cluster's shared Gateway, as in make demo
            "MODELOPS_GATEWAY": SHARED_GATEWAY.env,
            **env,
        }
        self.log_path = log_dir / "operator.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "modelops-operator")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def healthy():
            assert self.proc.poll() is None, f"operator exited; see {self.log_path}"
            try:
                return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("operator liveness", healthy, timeout=90)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc:
            stop_process_group(self.proc)


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    """Extra environment for the module's operator; a module overrides this to configure it."""
    return {}


@pytest.fixture(scope="module")
def operator(registry, versions, namespace, tmp_path_factory, operator_env):
    op = Operator(registry, tmp_path_factory.mktemp("operator"), MODELOPS_WATCH_NAMESPACE=namespace, **operator_env)
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def namespace(cluster):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
