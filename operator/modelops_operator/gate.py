"""The readiness gate: a new pod takes traffic only after its own smoke checks pass.

Inference pods carry the readiness gate modelops.io/verified (VERIFIED_GATE), and Kubernetes keeps a pod
out of its Service until that pod condition is True. Once a new pod's containers are ready (model loaded, warm-up
inference done) the operator smoke-checks it directly at its IP and only then opens its gate. So an
unverified version never answers a user's request, and a failing one is rolled back while the old
pods still serve every request.
"""

from __future__ import annotations

import datetime
from typing import Any

from . import kube
from .manifests import HTTP_PORT, MODEL_VERSION_ANNOTATION, VERIFIED_GATE, selector_string
from .smoke import SmokeCase, run_smoke
from .spec import SmokeSpec


def pod_version(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)


def awaiting_gate(pod: dict[str, Any]) -> bool:
    """Containers ready (the model answers its warm-up) but not yet admitted to the Service. Only a pod
    that declares the gate waits at it (an export Job's pod does not)."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    gates = {g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []}
    if VERIFIED_GATE not in gates:
        return False
    conditions = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    return conditions.get("ContainersReady") == "True" and conditions.get(VERIFIED_GATE) != "True"


async def open_gate(pod: dict[str, Any], reason: str, message: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await kube.set_pod_condition(pod["metadata"]["name"], pod["metadata"]["namespace"], {
        "type": VERIFIED_GATE, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now,
    })


async def admit_pods(name: str, namespace: str, version: str, cases: list[SmokeCase] | None,
                     smoke: SmokeSpec) -> str | None:
    """Check and admit every waiting pod of `version`; the evidence of the first pod that fails.

    `cases` None admits without checks: a restored last good version passed them when it shipped.
    """
    for pod in await kube.list_objects("v1", "Pod", namespace, selector_string(name)):
        if pod_version(pod) != version or not awaiting_gate(pod):
            continue
        if cases is None:
            await open_gate(pod, "LastGoodVersion", f"version {version} passed its smoke checks when it shipped")
            continue
        base_url = f"http://{pod['status']['podIP']}:{HTTP_PORT}"
        result = await run_smoke(base_url, name, cases, smoke, version=version, settle_seconds=0)
        if not result.ok(smoke.min_success_rate):
            return f"pod {pod['metadata']['name']}: {result.evidence()}"
        await open_gate(pod, "SmokeChecksPassed", f"{result.passed}/{result.total} smoke requests passed")
    return None
