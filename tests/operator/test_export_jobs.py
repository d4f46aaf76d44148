"""Exports as Jobs, end to end on the real cluster: a real MLflow server of this module's own (it is
stopped and restarted on its port mid-export), real trained versions, the operator as a process, the
training image's `modelops-export` in Jobs in the ModelDeployment's namespace.

Tests run in file order and share one namespace, one MLflow and one operator (with a concurrency
limit of one export Job, so the queue shows).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid

import pytest

from ..support import wait_until
from .conftest import MODEL, Operator, kget, kubectl, pod_reachable_registry
from .test_e2e import ROWS, apply, condition, infer, manifest, probabilities, service_url, status, wait_settled

pytestmark = pytest.mark.cluster
SECRET_PASSWORD = "hunter2-" + uuid.uuid4().hex[:8]


class Registry:
    """This module's own real MLflow server, reachable from pods at the node's address."""

    def __init__(self, urls: dict[str, str], node_ip: str):
        self.urls, self.node_ip = urls, node_ip
        self.port = int(urls["pods"].rsplit(":", 1)[1])

    @contextlib.contextmanager
    def unreachable_from_pods(self):
        """MLflow down as the Job sees it, while the operator (on loopback) still reaches it: the host
        refuses the pods' connections to MLflow's port for the block's length."""
        rule = ["INPUT", "-p", "tcp", "-d", self.node_ip, "--dport", str(self.port), "-j", "REJECT",
                "--reject-with", "tcp-reset"]
        subprocess.run(["iptables", "-w", "-I", *rule], check=True)
        try:
            yield
        finally:
            subprocess.run(["iptables", "-w", "-D", *rule], check=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, node_ip):
    with pod_reachable_registry(tmp_path_factory.mktemp("mlflow-jobs"), node_ip) as urls:
        yield Registry(urls, node_ip)


def train_version(registry: Registry, seed: int) -> str:
    from modelops_training.train import TrainConfig, train

    return train(TrainConfig(dataset="breast_cancer", epochs=2, seed=seed, register=MODEL, progress=False,
                             tracking_uri=registry.urls["local"])).version


@pytest.fixture(scope="module")
def versions(registry) -> dict[str, str]:
    return {"v1": train_version(registry, 0), "v2": train_version(registry, 1)}


@pytest.fixture(scope="module")
def operator(registry, versions, namespace, tmp_path_factory):
    op = Operator(registry.urls, tmp_path_factory.mktemp("operator-jobs"), MODELOPS_MAX_CONCURRENT_EXPORTS="1",
                  MODELOPS_WATCH_NAMESPACE=namespace)
    op.start()
    yield op
    op.stop()


def export_jobs(namespace: str, version: str | None = None) -> list[dict]:
    selector = "app.kubernetes.io/name=modelops-export" + (f",modelops.io/model-version={version}" if version else "")
    return json.loads(kubectl("get", "jobs", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]


def test_an_export_job_runs_in_the_namespace_and_the_version_becomes_ready(operator, namespace, versions):
    apply(namespace, manifest("jobs", model={"version": versions["v1"]}))
    wait_until("the export Job", lambda: export_jobs(namespace, versions["v1"]), timeout=120)
    st = wait_settled(namespace, "jobs", versions["v1"])
    assert st["phase"] == "Ready", st
    assert condition(st, "Exported")["status"] == "True"
    [job] = export_jobs(namespace, versions["v1"])
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["containers"][0]["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["metadata"]["ownerReferences"][0]["uid"] == kget("modeldeployment", "jobs", namespace)["metadata"][
        "uid"]
    assert kget("networkpolicy", "modelops-export", namespace) is not None
    assert probabilities(infer(service_url(namespace, "jobs"), "jobs", ROWS)).shape == (len(ROWS), 2)


def test_a_complete_export_is_reused_without_a_job(operator, namespace, versions):
    apply(namespace, manifest("jobs-again", model={"version": versions["v1"]}))
    st = wait_settled(namespace, "jobs-again", versions["v1"])
    assert st["phase"] == "Ready", st
    assert len(export_jobs(namespace, versions["v1"])) == 1


def test_an_oom_killed_export_fails_naming_it_and_the_old_version_keeps_serving(operator, namespace, versions):
    apply(namespace, manifest("jobs", model={"version": versions["v2"]},
                              export={"resources": {"requests": {"memory": "48Mi"}, "limits": {"memory": "48Mi"}}}))
    st = wait_settled(namespace, "jobs", versions["v2"], timeout=240)
    assert st["phase"] == "RolledBack", st
    exported = condition(st, "Exported")
    assert exported["status"] == "False" and "OOMKilled" in exported["message"], exported
    assert st["modelVersion"] == versions["v1"]
    answer = infer(service_url(namespace, "jobs"), "jobs", ROWS[:1])
    assert answer.status_code == 200 and answer.json()["model_version"] == versions["v1"]


def test_an_export_job_the_api_server_rejects_settles_as_invalid_spec(operator, namespace, versions):
    """Requests above limits: the API server refuses the Job; the attempt settles, naming why."""
    apply(namespace, manifest("jobs", model={"version": versions["v2"]},
                              export={"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "64Mi"}}}))
    st = wait_settled(namespace, "jobs", versions["v2"], timeout=120)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == versions["v1"], st
    exported = condition(st, "Exported")
    assert "InvalidSpec" in exported["message"] and "less than or equal to memory limit" in exported["message"]


def test_operator_killed_while_a_job_runs_joins_it_after_restart(operator, namespace, registry):
    version = train_version(registry, 3)
    apply(namespace, manifest("restarted", model={"version": version}))
    wait_until("the export Job", lambda: export_jobs(namespace, version), timeout=120)
    operator.kill()
    operator.start()
    st = wait_settled(namespace, "restarted", version, timeout=300)
    assert st["phase"] == "Ready", st
    assert len(export_jobs(namespace, version)) == 1


def test_mlflow_down_during_the_job_retries_then_ready_and_a_second_export_waits_its_turn(
        operator, namespace, registry):
    first, second = train_version(registry, 4), train_version(registry, 5)

    def reason(name):
        exported = next((c for c in status(namespace, name).get("conditions", []) if c["type"] == "Exported"), {})
        return exported.get("reason")

    with registry.unreachable_from_pods():
        apply(namespace, manifest("outage", model={"version": first}))
        wait_until("ExportRetrying", lambda: reason("outage") == "ExportRetrying", timeout=300)
        apply(namespace, manifest("queued", model={"version": second}))  # the limit is one Job
        wait_until("ExportQueued", lambda: reason("queued") == "ExportQueued", timeout=60)
    st = wait_settled(namespace, "outage", first, timeout=300)
    assert st["phase"] == "Ready", st
    st = wait_settled(namespace, "queued", second, timeout=300)
    assert st["phase"] == "Ready", st
    assert len(export_jobs(namespace, first)) == 1


def test_ten_deployments_following_one_alias_share_one_export_job(operator, namespace, registry, versions):
    from modelops_training.registry import set_alias

    set_alias(MODEL, "fleet", versions["v1"], tracking_uri=registry.urls["local"])
    names = [f"fleet-{i}" for i in range(10)]
    small = {"resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}, "imagePullPolicy": "Never"}
    for name in names:
        obj = manifest(name, model={"alias": "fleet"})
        obj["spec"]["serving"] = small
        apply(namespace, obj)
    for name in names:
        assert wait_settled(namespace, name, versions["v1"], timeout=300)["phase"] == "Ready"
    moved = train_version(registry, 6)
    set_alias(MODEL, "fleet", moved, tracking_uri=registry.urls["local"])
    for name in names:
        assert wait_settled(namespace, name, moved, timeout=420)["phase"] == "Ready"
    jobs = export_jobs(namespace, moved)
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    assert len(jobs[0]["metadata"]["ownerReferences"]) >= 2  # joined, not duplicated
    for name in names:
        kubectl("delete", "modeldeployment", name, "-n", namespace, "--wait=false")


class Listener:
    """A TCP listener that counts the connections it is offered."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def test_a_disallowed_tracking_uri_is_refused_without_a_connection(operator, namespace):
    listener = Listener()
    try:
        uri = f"http://127.0.0.1:{listener.port}"
        apply(namespace, manifest("elsewhere", model={"alias": "champion", "trackingUri": uri}))
        st = wait_settled(namespace, "elsewhere")
        assert st["phase"] == "Failed", st
        degraded = condition(st, "Degraded")
        assert degraded["reason"] == "TrackingUriNotAllowed"
        assert uri in degraded["message"] and "allowedTrackingUris" in degraded["message"]
        time.sleep(12)  # two alias-poll cycles (5 s): the poller must not call it either
        assert listener.connections == 0
        assert kget("deployment", "elsewhere", namespace) is None
    finally:
        listener.close()


def test_credentials_in_a_tracking_uri_are_refused_and_never_shown(operator, namespace):
    uri = f"http://modelops:{SECRET_PASSWORD}@127.0.0.1:5000"
    res = apply(namespace, manifest("creds", model={"version": "1", "trackingUri": uri}), check=False)
    assert res.returncode != 0 and "credentialsSecret" in res.stderr, res.stderr
    everything = kubectl("get", "modeldeployments,jobs,deployments,events", "-n", namespace, "-o", "yaml").stdout
    assert SECRET_PASSWORD not in everything
    assert SECRET_PASSWORD not in operator.log_path.read_text()
