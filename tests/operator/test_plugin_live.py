"""kubectl-modelops as users run it (`kubectl modelops ...`, the installed plugin found on PATH) against
the real API server. No operator runs here: the tests write a ModelDeployment's status themselves
through the status subresource, as the operator would, and check what the plugin reads and writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from modelops_operator.plugin import REQUEST_ANNOTATION

from .conftest import KUBECONFIG, ROOT, kget, kubectl

pytestmark = pytest.mark.cluster
CRD = ROOT / "crds/modelops.io_modeldeployments.yaml"
BIN = Path(sys.executable).parent  # where `make setup` installs the kubectl-modelops entry point
PATH = os.pathsep.join([str(BIN), str(ROOT / ".tools/bin"), os.environ["PATH"]])


@pytest.fixture(scope="module")
def crd() -> None:
    """The cluster answers and serves the CRD with the Held phase. The CRD is applied only where it is
    missing (a fresh cluster): a cluster that others share keeps the one it has."""
    res = kubectl("get", "--raw", "/readyz", check=False)
    assert res.returncode == 0, f"no cluster answers with {KUBECONFIG}: start it with `make cluster-up`. {res.stderr}"
    found = kget("crd", "modeldeployments.modelops.io", "default")
    if found is None:
        kubectl("apply", "--server-side", "-f", str(CRD))
        kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelops.io", "--timeout=60s")
        return
    status = found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "Held" in status["properties"]["phase"]["enum"], (
        "the cluster's ModelDeployment CRD predates the Held phase: apply crds/ (`kubectl apply --server-side -f crds`)"
    )


@pytest.fixture(scope="module")
def namespace(crd):
    prefix = os.environ.get("MODELOPS_TEST_NAMESPACE_PREFIX", "plugin")
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def user(crd) -> str:
    return json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]


def modelops(*args: str) -> subprocess.CompletedProcess:
    """`kubectl modelops ARGS`: kubectl finds the plugin on PATH, the plugin finds kubectl and KUBECONFIG."""
    exe = shutil.which("kubectl", path=PATH)
    assert shutil.which("kubectl-modelops", path=PATH), f"kubectl-modelops is not installed in {BIN}: run `make setup`"
    return subprocess.run([exe, "modelops", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": PATH, "KUBECONFIG": KUBECONFIG})


def set_status(name: str, namespace: str, status: dict) -> None:
    kubectl("patch", "modeldeployment", name, "-n", namespace, "--subresource=status", "--type", "merge",
            "-p", json.dumps({"status": status}))


HISTORY = [
    {"version": "3", "verdict": "Pass", "reason": "NoRegression", "phase": "Ready",
     "startedAt": "2026-01-01T10:00:00Z", "finishedAt": "2026-01-01T10:05:00Z"},
    {"version": "4", "verdict": "Inconclusive", "reason": "TooFewRequests", "startedAt": "2026-01-02T10:00:00Z"},
]
HELD = {
    "phase": "Held", "modelVersion": "3", "targetModelVersion": "4", "url": "http://cancer.example",
    "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "version 3 serves\nmore"},
                   {"type": "Verified", "status": "Unknown", "reason": "Analysing"}],
    "analysis": {"verdict": "Inconclusive", "reason": "TooFewRequests", "message": "12 of the 200 requests needed"},
    "history": HISTORY,
}


@pytest.fixture(scope="module")
def deployment(namespace) -> str:
    name = "cancer"
    manifest = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"model": {"name": "e2e-cancer", "alias": "champion"}}}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return name


def request_of(name: str, namespace: str) -> dict | None:
    raw = (kget("modeldeployment", name, namespace)["metadata"].get("annotations") or {}).get(REQUEST_ANNOTATION)
    return json.loads(raw) if raw else None


def test_status_shows_the_phase_versions_conditions_and_the_verdict(deployment, namespace):
    set_status(deployment, namespace, HELD)
    res = modelops("status", deployment, "-n", namespace)
    assert res.returncode == 0, res.stderr
    for line in ("Phase:      Held", "Serving:    3", "Target:     4", "URL:        http://cancer.example",
                 "Verdict:  Inconclusive", "Reason:   TooFewRequests", "Message:  12 of the 200 requests needed"):
        assert line in res.stdout, res.stdout
    assert "version 3 serves" in res.stdout and "more" not in res.stdout


def test_history_lists_every_rollout_with_dashes_for_what_is_missing(deployment, namespace):
    set_status(deployment, namespace, HELD)
    res = modelops("history", deployment, "--namespace", namespace, "--kubeconfig", KUBECONFIG)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "VERDICT", "REASON", "PHASE", "STARTED", "FINISHED"]
    assert lines[1].split() == ["3", "Pass", "NoRegression", "Ready", "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"]
    assert lines[2].split() == ["4", "Inconclusive", "TooFewRequests", "-", "2026-01-02T10:00:00Z", "-"]


def test_promote_is_refused_when_the_version_is_not_held(deployment, namespace):
    set_status(deployment, namespace, {**HELD, "phase": "Ready"})
    res = modelops("promote", deployment, "-n", namespace)
    assert res.returncode == 1
    assert "phase Ready" in res.stderr and "only a held version" in res.stderr
    assert request_of(deployment, namespace) is None


def test_promote_asks_for_the_held_version_naming_who_asked(deployment, namespace, user):
    set_status(deployment, namespace, HELD)
    res = modelops("promote", deployment, "-n", namespace)
    assert res.returncode == 0, res.stderr
    req = request_of(deployment, namespace)
    assert (req["action"], req["version"], req["by"]) == ("promote", "4", user)
    assert req["id"] in res.stdout


def test_rollback_pins_the_version_drops_the_alias_and_says_so(deployment, namespace, user):
    res = modelops("rollback", deployment, "-n", namespace, "--to", "2")
    assert res.returncode == 0, res.stderr
    model = kget("modeldeployment", deployment, namespace)["spec"]["model"]
    assert model.get("version") == "2" and "alias" not in model
    req = request_of(deployment, namespace)
    assert (req["action"], req["version"], req["by"]) == ("rollback", "2", user)
    assert "no longer follows its alias champion" in res.stdout


def test_kubectls_own_errors_are_surfaced(namespace, crd):
    res = modelops("status", "absent", "-n", namespace)
    assert res.returncode == 1 and "not found" in res.stderr
