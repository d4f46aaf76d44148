"""Watching a Deployment roll out, the way `kubectl rollout status` judges it, failing it only when
nothing progressed for progressDeadlineSeconds, the way the Deployment controller means that deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import kube
from .gate import awaiting_gate, pod_conditions, pod_version
from .manifests import VERIFIED_GATE, selector_string


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


# Kubernetes' own deadline is switched off (manifests.NO_KUBERNETES_DEADLINE): pods held at the readiness
# gate are not Ready, so the deployment controller would count the operator's checks and downtime as
# no progress. The operator keeps the deadline itself, from what it observes on every poll.
POD_MILESTONES = ("created", "scheduled", "started", "containers ready", "admitted")


def pod_milestone(pod: dict[str, Any]) -> int:
    """How far a pod got, as an index into POD_MILESTONES.

    Restarts are not a milestone: a crash-looping pod starts again and again without getting further,
    and counting its restartCount would let it hold off the deadline forever (Kubernetes' own
    Deployment deadline does not count restarts either)."""
    status = pod.get("status") or {}
    conditions = pod_conditions(pod)
    containers = status.get("containerStatuses") or []
    if conditions.get(VERIFIED_GATE) == "True":
        return 4
    if conditions.get("ContainersReady") == "True":
        return 3
    if containers and all(cs.get("started") or (cs.get("state") or {}).get("running") for cs in containers):
        return 2
    return 1 if conditions.get("PodScheduled") == "True" else 0


class Fingerprint(NamedTuple):
    """What the operator observed of a rollout, as numbers that only grow while it progresses:
    the Deployment's observedGeneration, updated, ready and available replicas and minus its old
    replicas, and the milestone of each (not terminating) pod of the version rolling out."""

    deployment: tuple[int, ...]
    pods: tuple[tuple[str, int], ...]


def fingerprint(deployment: dict[str, Any] | None, pods: list[dict[str, Any]], version: str) -> Fingerprint:
    status = (deployment or {}).get("status") or {}
    total, updated = status.get("replicas") or 0, status.get("updatedReplicas") or 0
    counts = (status.get("observedGeneration") or 0, updated, status.get("readyReplicas") or 0,
              status.get("availableReplicas") or 0, -(total - updated))
    mine = sorted((pod["metadata"]["name"], pod_milestone(pod)) for pod in pods
                  if pod_version(pod) == version and not pod["metadata"].get("deletionTimestamp"))
    return Fingerprint(counts, tuple(mine))


def progressed(before: Fingerprint, now: Fingerprint) -> bool:
    """Progress is reaching something not reached before: a higher count, a new pod, a pod's next
    milestone. A count that falls and rises again (a pod crashing after it was ready) is not."""
    seen = dict(before.pods)
    return (any(n > b for n, b in zip(now.deployment, before.deployment, strict=True))
            or any(level > seen.get(name, -1) for name, level in now.pods))


def high_water(before: Fingerprint, now: Fingerprint) -> Fingerprint:
    """The most of each number seen so far (pods that are gone are forgotten: a new pod has a new name)."""
    seen = dict(before.pods)
    return Fingerprint(tuple(max(n, b) for n, b in zip(now.deployment, before.deployment, strict=True)),
                       tuple((name, max(level, seen.get(name, -1))) for name, level in now.pods))


@dataclass(frozen=True)
class Progress:
    """The high-water fingerprint and when the operator last saw it grow (status.attempt.progress)."""

    fingerprint: Fingerprint
    observed_at: float

    def to_status(self) -> dict[str, Any]:
        return {"fingerprint": {"deployment": list(self.fingerprint.deployment),
                                "pods": [list(p) for p in self.fingerprint.pods]},
                "observedAt": round(self.observed_at, 3)}

    @classmethod
    def from_status(cls, raw: dict[str, Any] | None) -> Progress | None:
        """None for a missing or unreadable record (an older operator's status): the clock starts afresh."""
        try:
            fp = raw["fingerprint"]
            return cls(Fingerprint(tuple(int(n) for n in fp["deployment"]),
                                   tuple((str(name), int(level)) for name, level in fp["pods"])),
                       float(raw["observedAt"]))
        except (KeyError, TypeError, ValueError):
            return None


def start_clock(seen: Progress | None, now_fp: Fingerprint, now: float) -> Progress:
    """A wait's first observation starts the clock, whatever `seen` (status, from before a restart or a
    retry) says: the operator could not observe while it was down or backing off, so that time is not
    held against the version. What `seen` records still counts as reached, so a pod that had started
    before the restart is not progress when it is seen started again."""
    return Progress(now_fp if seen is None else high_water(seen.fingerprint, now_fp), now)


def advance(last: Progress, now_fp: Fingerprint, now: float, waiting_at_gate: bool) -> Progress:
    """The clock restarts on progress, and while a pod waits at the readiness gate: that wait is the
    operator's own checking, not the version's slowness."""
    if progressed(last.fingerprint, now_fp) or waiting_at_gate:
        return Progress(high_water(last.fingerprint, now_fp), now)
    return last


def deadline_passed(last: Progress, now: float, deadline_seconds: float) -> bool:
    return now - last.observed_at >= deadline_seconds


async def wait_available(name: str, namespace: str, version: str, deadline_seconds: float, *,
                         admit: Callable[[], Awaitable[str | None]] | None = None,
                         seen: dict[str, Any] | None = None,
                         remember: Callable[[dict[str, Any]], Awaitable[Any]] | None = None,
                         poll: float = 1.0) -> RolloutState:
    """Poll until the rollout of `version` is done, the Deployment reports its own deadline, or nothing
    progressed for `deadline_seconds` (as Kubernetes' Deployment progressDeadlineSeconds means it).

    `admit` runs on every poll to let waiting pods through their readiness gate (gate.py); the
    evidence it returns when a pod fails its checks ends the wait as `rejected`. `seen` is the progress
    record `remember` last stored (status.attempt.progress); `remember` is called when it grows.
    """
    last: Progress | None = None
    while True:
        if admit is not None and (evidence := await admit()):
            return RolloutState(False, True, evidence, rejected=True)
        dep = await kube.get("apps/v1", "Deployment", name, namespace)
        state = rollout_state(dep) if dep else RolloutState(False, False, "deployment not found yet")
        if state.done or state.failed:
            return state
        pods = await kube.list_objects("v1", "Pod", namespace, selector_string(name))
        now_fp, now = fingerprint(dep, pods, version), time.time()
        if last is None:
            current = start_clock(Progress.from_status(seen), now_fp, now)
        else:
            current = advance(last, now_fp, now, any(pod_version(p) == version and awaiting_gate(p) for p in pods))
        if remember is not None and (last is None or current.fingerprint != last.fingerprint):
            await remember(current.to_status())
        last = current
        if deadline_passed(last, now, deadline_seconds):
            return RolloutState(False, True, f"no progress for {deadline_seconds:g}s: {state.message}")
        await asyncio.sleep(poll)


def pod_evidence(pods: list[dict[str, Any]], model_version: str) -> str:
    """Why the pods of one model version are not serving, in one line per pod."""
    lines = []
    for pod in pods:
        if pod_version(pod) != model_version:
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
