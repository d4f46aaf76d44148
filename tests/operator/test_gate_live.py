"""The readiness gate's sweep against the real API server: pods that wait at the gate with no event to
come are admitted when they serve the verified target, and only then. No operator runs in this
module's namespace, so nothing but the sweep under test opens a gate."""

from __future__ import annotations

import asyncio
import json

import pytest

from modelops_operator import gate
from modelops_operator.manifests import (
    MODEL_VERSION_ANNOTATION,
    TARGET_HASH_ANNOTATION,
    VERIFIED_GATE,
    labels,
    pod_security_context,
)
from modelops_operator.target import ServingTarget

from .conftest import SERVING_IMAGE, kget, kubectl, wait_until

pytestmark = pytest.mark.cluster
NAME = "swept"
VERIFIED = ServingTarget("3", "runs:/r/onnx/model.onnx", "f" * 64, SERVING_IMAGE, serving={"threads": 1})
RETHREADED = ServingTarget("3", "runs:/r/onnx/model.onnx", "f" * 64, SERVING_IMAGE, serving={"threads": 2})


def waiting_pod(namespace: str, pod_name: str, target: ServingTarget) -> None:
    """A pod like the operator's (labels, annotations, gate) whose container is ready at once."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "labels": labels(NAME), "annotations": {
            MODEL_VERSION_ANNOTATION: target.model_version, TARGET_HASH_ANNOTATION: target.hash()}},
        "spec": {
            "securityContext": pod_security_context(),
            "readinessGates": [{"conditionType": VERIFIED_GATE}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "server", "image": SERVING_IMAGE, "imagePullPolicy": "Never",
                            "command": ["python", "-c", "import time; time.sleep(3600)"],
                            "securityContext": {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}}],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(pod))


def wait_waiting(namespace: str, pod_name: str) -> None:
    wait_until(f"{pod_name} to wait at the gate",
               lambda: gate.awaiting_gate(kget("pod", pod_name, namespace) or {"metadata": {}}), timeout=120)


def gate_condition(namespace: str, pod_name: str) -> dict | None:
    pod = kget("pod", pod_name, namespace) or {}
    return next((c for c in pod.get("status", {}).get("conditions", []) if c["type"] == VERIFIED_GATE), None)


@pytest.fixture(scope="module")
def verified_status(namespace) -> dict:
    """A ModelDeployment whose status says VERIFIED passed its checks (what a Ready reconcile writes)."""
    md = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": NAME},
          "spec": {"model": {"name": "m", "version": "3"}}}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(md))
    status = {"phase": "Ready", "modelVersion": "3", "lastGood": VERIFIED.to_status()}
    kubectl("patch", "modeldeployment", NAME, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))
    return status


def test_sweep_admits_waiting_pods_of_the_verified_target_only(namespace, verified_status):
    waiting_pod(namespace, "verified", VERIFIED)
    waiting_pod(namespace, "rethreaded", RETHREADED)
    for pod_name in ("verified", "rethreaded"):
        wait_waiting(namespace, pod_name)

    assert asyncio.run(gate.sweep(namespace, NAME, verified_status)) == 1
    assert gate_condition(namespace, "verified")["reason"] == "VerifiedTarget"
    assert gate_condition(namespace, "rethreaded") is None  # a new target waits for its smoke checks
    wait_until("the admitted pod to turn Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in kget("pod", "verified", namespace)["status"]["conditions"]), timeout=30)
    assert asyncio.run(gate.sweep(namespace, NAME, verified_status)) == 0  # nothing left to admit


def test_the_periodic_sweep_finds_waiting_pods_from_the_pod_list_alone(namespace, verified_status):
    """sweep_all reads the ModelDeployment's status itself, as the operator's timer calls it."""
    waiting_pod(namespace, "scaled-up", VERIFIED)
    wait_waiting(namespace, "scaled-up")
    assert asyncio.run(gate.sweep_all(namespace)) == 1
    assert gate_condition(namespace, "scaled-up")["reason"] == "VerifiedTarget"
    assert gate_condition(namespace, "rethreaded") is None
