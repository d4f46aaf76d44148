"""The readiness gate: a new pod takes traffic only after its own smoke checks pass.

Inference pods carry the readiness gate modelops.io/verified (VERIFIED_GATE), and Kubernetes keeps a pod
out of its Service until that pod condition is True. Once a new pod's containers are ready (model loaded, warm-up
inference done) the operator smoke-checks it directly at its IP and only then opens its gate. So an
unverified version never answers a user's request, and a failing one is rolled back while the old
pods still serve every request.

Pods of the verified target (status.lastGood: HPA scale-ups, rescheduled pods, a restored last good
target) pass without new checks: `sweep` admits them. "Verified" is keyed on the whole target's hash
(model, image, serving settings), not the version, so a serving change is checked like a new version.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from . import kube
from .manifests import (
    HTTP_PORT,
    MODEL_VERSION_ANNOTATION,
    TARGET_HASH_ANNOTATION,
    TRACK_LABEL,
    VERIFIED_GATE,
    canary_name,
    owner_of,
    selector_string,
    serving_pods_selector,
)
from .smoke import SmokeCase, run_smoke
from .spec import SmokeSpec
from .target import ServingTarget, verified_hash


def pod_version(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)


def pod_target_hash(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(TARGET_HASH_ANNOTATION)


def serves(pod: dict[str, Any], target_hash: str | None, version: str | None) -> bool:
    """The pod was built from the target of this hash. A pod from a template older than target hashes
    (made before the operator learnt them) is matched by version, so an upgrade strands none of them."""
    pod_hash = pod_target_hash(pod)
    if pod_hash is None:
        return version is not None and pod_version(pod) == version
    return pod_hash == target_hash


def of_verified_target(pod: dict[str, Any], status: dict[str, Any] | None) -> bool:
    """The pod serves the target that last passed its checks (status.lastGood), or it is a pod of the
    running canary, whose target passed them when the canary's first pods were admitted."""
    last_good = (status or {}).get("lastGood") or {}
    if (pod["metadata"].get("labels") or {}).get(TRACK_LABEL) == "canary":
        return pod_target_hash(pod) is not None and pod_target_hash(pod) == running_canary_hash(status)
    return serves(pod, verified_hash(last_good), last_good.get("modelVersion"))


def running_canary_hash(status: dict[str, Any] | None) -> str | None:
    """The target hash of the canary this attempt runs and admitted (canary.py records it at each
    step), or None: none, another attempt's, or one that ended."""
    status = status or {}
    record = status.get("canary") or {}
    if record.get("ended") or record.get("attempt") != (status.get("attempt") or {}).get("key"):
        return None
    return record.get("targetHash")


def pod_conditions(pod: dict[str, Any]) -> dict[str, str]:
    """A pod's conditions as type -> status ("True", "False", "Unknown")."""
    return {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}


async def serving_pods(namespace: str, deployment: str, status: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The pods of `deployment` that take traffic now: Ready (so admitted), not terminating, with an
    IP; with `status`, only those of its verified target (of_verified_target)."""
    pods = await kube.list_objects("v1", "Pod", namespace, selector_string(deployment))
    return [p for p in pods if pod_conditions(p).get("Ready") == "True" and not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("podIP") and (status is None or of_verified_target(p, status))]


def awaiting_gate(pod: dict[str, Any]) -> bool:
    """Containers ready (the model answers its warm-up) but not yet admitted to the Service. Only a pod
    that declares the gate waits at it (an export Job's pod does not)."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    gates = {g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []}
    if VERIFIED_GATE not in gates:
        return False
    conditions = pod_conditions(pod)
    return conditions.get("ContainersReady") == "True" and conditions.get(VERIFIED_GATE) != "True"


async def open_gate(pod: dict[str, Any], reason: str, message: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await kube.set_pod_condition(pod["metadata"]["name"], pod["metadata"]["namespace"], {
        "type": VERIFIED_GATE, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now,
    })


async def admit_verified(pod: dict[str, Any], status: dict[str, Any] | None) -> bool:
    """Admit `pod` unchecked when it waits at the gate and serves the verified target; whether it did."""
    if not awaiting_gate(pod) or not of_verified_target(pod, status):
        return False
    await open_gate(pod, "VerifiedTarget", f"the pod serves the verified target {pod_target_hash(pod)} "
                                           f"(version {pod_version(pod)})")
    return True


async def sweep(namespace: str, name: str, status: dict[str, Any] | None) -> int:
    """Admit every waiting pod of the verified target; how many. Pods that turned ready while a rollout
    was verifying (an HPA scale-up, an eviction) get no later event of their own, so they are swept
    after phase changes and periodically (handlers.sweep_forever) rather than waiting for one."""
    admitted = 0
    names = [name, canary_name(name)] if running_canary_hash(status) else [name]
    for deployment in names:
        for pod in await kube.list_objects("v1", "Pod", namespace, selector_string(deployment)):
            admitted += await admit_verified(pod, status)
    return admitted


async def sweep_all(namespace: str | None) -> int:
    """`sweep` every ModelDeployment with a pod waiting at the gate, in one namespace or (None) all. Idle,
    it costs one pod list the API server filters by label: no ModelDeployment is read unless a pod waits."""
    waiting: dict[tuple[str, str], list[dict]] = {}
    for pod in await kube.list_objects("v1", "Pod", namespace, serving_pods_selector()):
        if awaiting_gate(pod):
            meta = pod["metadata"]
            waiting.setdefault((meta["namespace"], owner_of(meta["labels"])), []).append(pod)
    admitted = 0
    for (ns, name), pods in waiting.items():
        owner = await kube.get(f"{kube.GROUP}/{kube.VERSION}", "ModelDeployment", name, ns)
        for pod in pods:
            admitted += await admit_verified(pod, (owner or {}).get("status"))
    return admitted


async def admit_pods(name: str, namespace: str, target: ServingTarget, cases: list[SmokeCase] | None,
                     smoke: SmokeSpec, judge: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                     model: str | None = None) -> str | None:
    """Check and admit every waiting pod of `target` among the pods of Deployment `name`; the evidence
    of the first pod that fails.

    `cases` None admits without checks: a restored last good target passed them when it shipped.
    `judge` runs for each pod that passed its checks, before its gate opens (the behaviour verdict,
    verdicts.ReplayJudge): it raises to keep the gate closed. `model`: the name the pods serve the
    model under, when it is not `name` (a canary's pods serve the ModelDeployment's).
    """
    version = target.model_version
    for pod in await kube.list_objects("v1", "Pod", namespace, selector_string(name)):
        if not serves(pod, target.hash(), version) or not awaiting_gate(pod):
            continue
        if cases is None:
            await open_gate(pod, "LastGoodVersion", f"version {version} passed its smoke checks when it shipped")
            continue
        base_url = f"http://{pod['status']['podIP']}:{HTTP_PORT}"
        result = await run_smoke(base_url, model or name, cases, smoke, version=version, settle_seconds=0)
        if not result.ok(smoke.min_success_rate):
            return f"pod {pod['metadata']['name']}: {result.evidence()}"
        if judge is not None:
            await judge(pod)
        await open_gate(pod, "ChecksPassed", f"{result.passed}/{result.total} smoke requests passed")
    return None
