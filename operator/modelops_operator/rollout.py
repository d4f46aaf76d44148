"""Watching a Deployment roll out, the way `kubectl rollout status` judges it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import kube
from .manifests import MODEL_VERSION_ANNOTATION, selector_string


@dataclass(frozen=True)
class RolloutState:
    done: bool
    failed: bool
    message: str
    rejected: bool = False  # a new pod failed its smoke checks at the readiness gate


def rollout_state(deployment: dict[str, Any]) -> RolloutState:
    """Judge a Deployment from its status alone (pure, so it is unit-tested on recorded objects)."""
    meta, spec, status = deployment["metadata"], deployment.get("spec", {}), deployment.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return RolloutState(False, False, "waiting for the deployment controller to observe the new spec")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(False, True, f"progress deadline exceeded: {cond.get('message', '')}")
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < want:
        return RolloutState(False, False, f"{updated} of {want} new replicas updated")
    if total > updated:
        return RolloutState(False, False, f"{total - updated} old replicas pending termination")
    if available < updated:
        return RolloutState(False, False, f"{available} of {updated} updated replicas available")
    return RolloutState(True, False, f"{available} replicas available")


async def wait_available(name: str, namespace: str, deadline: float, poll: float = 1.0,
                         admit: Callable[[], Awaitable[str | None]] | None = None) -> RolloutState:
    """Poll until the rollout is done, the Deployment reports its own deadline, or `deadline`
    (a time.time() instant kept in status, so a restarted operator keeps the same deadline).

    `admit` runs on every poll to let waiting pods through their readiness gate (gate.py); the
    evidence it returns when a pod fails its checks ends the wait as `rejected`.
    """
    while True:
        if admit is not None and (evidence := await admit()):
            return RolloutState(False, True, evidence, rejected=True)
        dep = await kube.get("apps/v1", "Deployment", name, namespace)
        state = rollout_state(dep) if dep else RolloutState(False, False, "deployment not found yet")
        if state.done or state.failed:
            return state
        if time.time() >= deadline:
            return RolloutState(False, True, f"not available before the progress deadline: {state.message}")
        await asyncio.sleep(poll)


def pod_evidence(pods: list[dict[str, Any]], model_version: str) -> str:
    """Why the pods of one model version are not serving, in one line per pod."""
    lines = []
    for pod in pods:
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get(MODEL_VERSION_ANNOTATION) != model_version:
            continue
        status = pod.get("status") or {}
        reasons = []
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            last = cs.get("lastState") or {}
            if state.get("waiting"):
                reasons.append(f"{state['waiting'].get('reason')}: {state['waiting'].get('message', '')}".strip())
            if last.get("terminated"):
                term = last["terminated"]
                reasons.append(f"last exit {term.get('exitCode')} ({term.get('reason')})")
            if not cs.get("ready"):
                reasons.append(f"not ready (restarts {cs.get('restartCount', 0)})")
        if not reasons:
            reasons.append(f"phase {status.get('phase')}")
        lines.append(f"pod {pod['metadata']['name']}: " + "; ".join(reasons))
    return "\n".join(lines) or "no pods of this version were created"


async def failing_pods_evidence(name: str, namespace: str, model_version: str) -> str:
    pods = await kube.list_objects("v1", "Pod", namespace, selector_string(name))
    return pod_evidence(pods, model_version)
