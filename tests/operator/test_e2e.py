"""The operator end to end on the real local cluster, with a real MLflow server and real models.

Tests run in file order and share one namespace and one operator process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from ..conftest import tracking
from .conftest import INGRESS_PORT, MODEL, ROOT, kget, kubectl, wait_until

pytestmark = pytest.mark.cluster
ROWS = load_breast_cancer().data[:6].astype(np.float32)
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def manifest(name: str, **spec) -> dict:
    model = spec.pop("model")
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        # these tests judge rollout mechanics with quickly trained versions (3 epochs); the behaviour
        # verdicts on them have their own module (test_verdicts_live.py) with fully trained ones
        "spec": {"model": {"name": MODEL, **model}, "serving": {"imagePullPolicy": "Never"},
                 "rollout": {"progressDeadlineSeconds": 90}, "analysis": {"enabled": False}, **spec},
    }


def apply(namespace: str, obj: dict, check: bool = True):
    return kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=check)


def status(namespace: str, name: str) -> dict:
    return (kget("modeldeployment", name, namespace) or {}).get("status") or {}


def wait_settled(namespace: str, name: str, version: str | None = None, timeout: float = 300) -> dict:
    """Wait for a settled phase of the current spec (for `version` when given) and return the status.

    The status must have observed the object's generation: right after an apply, the last attempt's
    settled phase (same target version, older spec) is still there until the operator reads the edit."""

    def settled():
        obj = kget("modeldeployment", name, namespace) or {}
        st = obj.get("status") or {}
        if (st.get("observedGeneration") or 0) < (obj.get("metadata", {}).get("generation") or 0):
            raise AssertionError(f"generation {obj['metadata']['generation']} not observed yet; status: {st}")
        if st.get("phase") in ("Ready", "RolledBack", "Failed"):
            if version is None or st.get("targetModelVersion") == version:
                return st
        raise AssertionError(f"status: {st}")

    return wait_until(f"{name} to settle", settled, timeout=timeout, ignore=(AssertionError,))


def condition(st: dict, type_: str) -> dict:
    return next(c for c in st.get("conditions", []) if c["type"] == type_)


def service_url(namespace: str, name: str) -> str:
    svc = kget("service", name, namespace)
    return f"http://{svc['spec']['clusterIP']}:80"


def infer(base: str, name: str, rows: np.ndarray, headers: dict | None = None) -> httpx.Response:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}
    return httpx.post(f"{base}/v2/models/{name}/infer", json=body, headers=headers or {}, timeout=10)


def routed(host: str, request: Callable[[], httpx.Response]) -> httpx.Response:
    """Sends `request` through Traefik until it answers 200: Traefik applies a route a moment after the
    pods turn ready, and answers 404/503 until then."""
    return wait_until(f"Traefik to route {host}", lambda: (r := request()).status_code == 200 and r, timeout=30,
                      ignore=(httpx.HTTPError,))


def probabilities(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])


def torch_outputs(registry: dict, version: str) -> np.ndarray:
    import mlflow.pytorch
    import torch

    with tracking(registry["local"]):
        model = mlflow.pytorch.load_model(f"models:/{MODEL}/{version}")
    with torch.no_grad():
        return model(torch.from_numpy(ROWS)).numpy()


class Load:
    """Light background traffic through the Service that counts every failed request."""

    def __init__(self, base: str, name: str):
        self.base, self.name = base, name
        self.ok, self.failures, self.versions = 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                resp = infer(self.base, self.name, ROWS[:1])
                if resp.status_code == 200 and np.isfinite(probabilities(resp)).all():
                    self.ok += 1
                    self.versions.add(resp.json().get("model_version"))
                else:
                    self.failures.append(f"{resp.status_code}: {resp.text[:200]}")
            except Exception as exc:  # any failure counts
                self.failures.append(repr(exc))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=15)


def test_apply_becomes_ready_and_serves_the_models_own_outputs(operator, namespace, versions, registry):
    spec = manifest("cancer", model={"version": versions["v1"]},
                    ingress={"host": "cancer.modelops.test", "path": "/"})
    apply(namespace, spec)
    st = wait_settled(namespace, "cancer", versions["v1"])
    assert st["phase"] == "Ready", st
    assert st["modelVersion"] == versions["v1"] and st["lastGoodModelVersion"] == versions["v1"]
    assert condition(st, "Exported")["status"] == "True"
    assert condition(st, "Verified")["status"] == "True"
    assert len(st["export"]["sha256"]) == 64

    expected = torch_outputs(registry, versions["v1"])
    via_service = probabilities(infer(service_url(namespace, "cancer"), "cancer", ROWS))
    np.testing.assert_allclose(via_service, expected, atol=1e-4)
    via_ingress = probabilities(routed("cancer.modelops.test", lambda: infer(
        f"http://127.0.0.1:{INGRESS_PORT}", "cancer", ROWS, headers={"Host": "cancer.modelops.test"})))
    np.testing.assert_allclose(via_ingress, expected, atol=1e-4)

    dep = kget("deployment", "cancer", namespace)
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", "cancer")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_new_version_rolls_out_without_a_failed_request(operator, namespace, versions):
    with Load(service_url(namespace, "cancer"), "cancer") as load:
        time.sleep(1)
        apply(namespace, manifest("cancer", model={"version": versions["v2"]},
                                  ingress={"host": "cancer.modelops.test", "path": "/"}))
        st = wait_settled(namespace, "cancer", versions["v2"])
        time.sleep(2)
    assert st["phase"] == "Ready", st
    assert st["modelVersion"] == versions["v2"]
    assert load.failures == [], load.failures[:5]
    assert load.ok > 20 and versions["v2"] in load.versions


def test_a_version_that_fails_smoke_checks_is_rolled_back_while_the_old_one_serves(operator, namespace, versions):
    with Load(service_url(namespace, "cancer"), "cancer") as load:
        apply(namespace, manifest("cancer", model={"version": versions["broken"]},
                                  ingress={"host": "cancer.modelops.test", "path": "/"}))
        st = wait_settled(namespace, "cancer", versions["broken"])
    assert st["phase"] == "RolledBack", st
    assert st["modelVersion"] == versions["v2"]
    rolled = condition(st, "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "VerificationFailed"
    assert "not finite" in rolled["message"] and "pod cancer-" in rolled["message"]
    # the broken pods failed their checks at the readiness gate: no user request ever reached them
    assert load.failures == [], load.failures[:5]
    assert load.versions == {versions["v2"]}
    dep = kget("deployment", "cancer", namespace)
    assert dep["spec"]["template"]["metadata"]["annotations"]["modelops.io/model-version"] == versions["v2"]
    # kopf posts events from a queue, a moment after the status patch
    def reasons() -> set[str]:
        events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                                    "involvedObject.name=cancer", "-o", "json").stdout)["items"]
        return {e["reason"] for e in events}

    wait_until("the VerificationFailed and RollingBack events",
               lambda: {"VerificationFailed", "RollingBack"} <= reasons(), timeout=30)
    # settled: the same generation is not retried
    time.sleep(5)
    assert status(namespace, "cancer")["attempt"] == st["attempt"]


def gate_reasons(namespace: str, name: str, threads: str) -> list[str]:
    """The readiness-gate reason of each running pod of `name` started with MODELOPS_INTRA_OP_THREADS."""
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}",
                              "-o", "json").stdout)["items"]
    reasons = []
    for pod in pods:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        if pod["metadata"].get("deletionTimestamp") or env.get("MODELOPS_INTRA_OP_THREADS") != threads:
            continue
        gate = [c for c in pod["status"].get("conditions", []) if c["type"] == "modelops.io/verified"]
        reasons.append(gate[0].get("reason") if gate else None)
    return reasons


def test_a_serving_change_that_keeps_the_version_is_smoke_checked_at_the_gate(operator, namespace, versions):
    """Only pods of the verified target skip the checks: new serving settings are a new target."""
    apply(namespace, manifest("threads", model={"version": versions["v1"]}))
    assert wait_settled(namespace, "threads", versions["v1"])["phase"] == "Ready"
    edited = manifest("threads", model={"version": versions["v1"]})
    edited["spec"]["serving"]["threads"] = 2
    apply(namespace, edited)
    st = wait_settled(namespace, "threads", versions["v1"])
    assert st["phase"] == "Ready", st
    assert st["lastGood"]["serving"]["threads"] == 2
    reasons = gate_reasons(namespace, "threads", "2")
    assert reasons and set(reasons) == {"ChecksPassed"}, reasons
    dep = kget("deployment", "threads", namespace)
    assert dep["spec"]["template"]["metadata"]["annotations"]["modelops.io/target-hash"] == st["lastGood"]["targetHash"]


def test_a_pod_of_the_verified_target_waiting_at_the_gate_is_let_in_without_checks(operator, namespace):
    """The operator's pod watch (filtered by the API server) or its periodic sweep re-admits it."""
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=threads",
                              "-o", "json").stdout)["items"]
    pod = next(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
    kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=strategic", "-p", json.dumps(
        {"status": {"conditions": [{"type": "modelops.io/verified", "status": "False", "reason": "Test"}]}}))
    started = time.monotonic()
    wait_until(f"{pod} to be admitted again", lambda: gate_reasons(namespace, "threads", "2") == ["VerifiedTarget"],
               timeout=60)
    print(f"re-admitted after {time.monotonic() - started:.1f}s")
    kubectl("delete", "modeldeployment", "threads", "-n", namespace, "--wait=false")


def test_a_missing_version_fails_naming_it_and_creates_nothing(operator, namespace):
    apply(namespace, manifest("ghost", model={"version": "999"}))
    st = wait_settled(namespace, "ghost")
    assert st["phase"] == "Failed"
    assert "999" in condition(st, "Degraded")["message"]
    assert kget("deployment", "ghost", namespace) is None
    assert kget("service", "ghost", namespace) is None


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"model": {"version": "1", "alias": "champion"}}, "spec.model"),
        ({"model": {"version": "1"}, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
         "spec.autoscaling.minReplicas"),
        ({"model": {"version": "1"}, "export": {"quantize": "int4"}}, "spec.export.quantize"),
    ],
    ids=["version-and-alias", "min-above-max", "bad-quantize"],
)
def test_invalid_resources_are_rejected_by_the_api_server(cluster, namespace, spec, field):
    res = apply(namespace, manifest("invalid", **spec), check=False)
    assert res.returncode != 0
    assert field in res.stderr, res.stderr
    assert kget("modeldeployment", "invalid", namespace) is None


def test_operator_killed_mid_rollout_converges_after_restart(operator, namespace, versions):
    # the operator's downtime is not held against the version: its first poll after the restart starts
    # the deadline's clock again (rollout.start_clock)
    apply(namespace, manifest("restart", model={"version": versions["v1"]}, rollout={"progressDeadlineSeconds": 240}))
    wait_until("restart to start rolling out",
               lambda: status(namespace, "restart").get("phase") in ("RollingOut", "Verifying", "Ready"))
    operator.kill()
    operator.start()
    st = wait_settled(namespace, "restart", versions["v1"])
    assert st["phase"] == "Ready", st
    assert probabilities(infer(service_url(namespace, "restart"), "restart", ROWS)).shape == (len(ROWS), 2)


def test_alias_move_rolls_forward(operator, namespace, versions, registry):
    from modelops_training.registry import set_alias

    apply(namespace, manifest("champion", model={"alias": "champion"}))
    st = wait_settled(namespace, "champion", versions["v1"])
    assert st["phase"] == "Ready", st
    set_alias(MODEL, "champion", versions["v2"], tracking_uri=registry["local"])
    st = wait_settled(namespace, "champion", versions["v2"], timeout=240)
    assert st["phase"] == "Ready" and st["modelVersion"] == versions["v2"], st


def test_a_rollout_longer_than_its_deadline_that_keeps_progressing_becomes_ready(operator, namespace, versions):
    """progressDeadlineSeconds bounds the time without progress, not the rollout: eight replicas replaced
    one at a time (maxSurge 1) take longer than 30 s in all, but each new pod is progress. (One pod's
    own start, from running to ready, shows nothing to observe: it must stay within the deadline.)"""
    rollout, deadline = {"maxSurge": 1, "maxUnavailable": 0}, 30
    try:
        apply(namespace, manifest("stepwise", model={"version": versions["v1"]}, replicas=8,
                                  rollout={**rollout, "progressDeadlineSeconds": 120}))
        assert wait_settled(namespace, "stepwise", versions["v1"])["phase"] == "Ready"
        apply(namespace, manifest("stepwise", model={"version": versions["v2"]}, replicas=8,
                                  rollout={**rollout, "progressDeadlineSeconds": deadline}))
        st = wait_settled(namespace, "stepwise", versions["v2"])
        assert st["phase"] == "Ready", st
        took = st["attempt"]["availableAt"] - st["attempt"]["exportedAt"]
        assert took > deadline, f"the rollout took {took:.0f}s, within the deadline: it proves nothing"
    finally:
        kubectl("delete", "modeldeployment", "stepwise", "-n", namespace, "--wait=false", check=False)


def test_a_version_whose_image_cannot_start_fails_about_its_deadline_after_the_last_progress(
        operator, namespace, versions):
    """Pods that never start make no progress: the deadline still ends the rollout."""
    try:
        apply(namespace, manifest("unpullable", model={"version": versions["v1"]},
                                  serving={"image": "modelops/inference:absent", "imagePullPolicy": "Never"},
                                  rollout={"progressDeadlineSeconds": 20}))
        st = wait_settled(namespace, "unpullable", versions["v1"], timeout=180)
        assert st["phase"] == "Failed", st
        available = condition(st, "Available")
        assert available["reason"] == "RolloutFailed" and "ErrImageNeverPull" in available["message"], available
        took = st["attempt"]["failedAt"] - st["attempt"]["exportedAt"]
        assert 20 <= took < 45, f"failed {took:.0f}s after the rollout began, deadline 20s"
    finally:
        kubectl("delete", "modeldeployment", "unpullable", "-n", namespace, "--wait=false", check=False)


def test_deleting_the_modeldeployment_removes_everything_it_created(operator, namespace):
    assert kget("deployment", "restart", namespace) is not None
    kubectl("delete", "modeldeployment", "restart", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until("children garbage-collected",
               lambda: kget("deployment", "restart", namespace) is None and kget("service", "restart", namespace)
               is None, timeout=120)


@pytest.fixture(scope="module")
def example_models(registry):
    """The models examples/ name, under their own names: breast-cancer (v1, @champion) and digits (v1)."""
    from modelops_training.registry import set_alias
    from modelops_training.train import TrainConfig, train

    for dataset, name in (("breast_cancer", "breast-cancer"), ("digits", "digits")):
        result = train(TrainConfig(dataset=dataset, epochs=2, seed=0, register=name, progress=False,
                                   tracking_uri=registry["local"]))
        assert result.version == "1", f"{name} already registered in this MLflow"
    set_alias("breast-cancer", "champion", "1", tracking_uri=registry["local"])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_becomes_ready_as_written(operator, namespace, example_models, path):
    """examples/ cannot rot: each file is applied unchanged and must serve."""
    obj = yaml.safe_load(path.read_text())
    name = obj["metadata"]["name"]
    kubectl("apply", "-n", namespace, "-f", str(path))
    try:
        st = wait_settled(namespace, name, timeout=300)
        assert st["phase"] == "Ready", st
        # status.readyReplicas follows the Deployment's own status, a moment after the phase
        wanted = obj["spec"].get("replicas") or 1
        wait_until(f"{name} to report {wanted} ready replicas",
                   lambda: status(namespace, name).get("readyReplicas", 0) >= wanted, timeout=60)
        host = (obj["spec"].get("ingress") or {}).get("host")
        if host:  # through Traefik on the node's ingress port, routed by Host
            meta = routed(host, lambda: httpx.get(f"http://127.0.0.1:{INGRESS_PORT}/v2/models/{name}",
                                                  headers={"Host": host}, timeout=10))
        else:
            meta = httpx.get(f"{service_url(namespace, name)}/v2/models/{name}", timeout=10)
        assert meta.status_code == 200, meta.text
        assert meta.json()["versions"] == [st["modelVersion"]]
    finally:
        kubectl("delete", "-n", namespace, "-f", str(path), "--wait=false", check=False)
