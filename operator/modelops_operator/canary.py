"""Canary releases through the Gateway API (spec.rollout.strategy: canary).

The new version runs as a second Deployment (<name>-canary) beside the stable one. Its pods pass
their own smoke checks and the replay verdict at the readiness gate like any new pod; then the
HTTPRoute <name> sends each step's weight of the Gateway's traffic to the canary Service, and the
step is judged on live traffic (live.py): the canary's pods against the stable pods over the same
window, from the pods' own /metrics, so no Prometheus is needed. After the last step reconcile.py
moves the stable Deployment to the version (still behind the gate), the route goes back to the stable
Service and the canary is scaled to zero. A failed step, an abort, or an edit or alias move that
supersedes the canary sets its weight to 0 and scales it to zero: the stable version never stopped
serving, so nothing needs restoring.

The Service <name> that in-cluster clients call points at the stable pods throughout: only traffic
through the Gateway is split. Pure decisions (replicas per step, planned looks, what a plugin request
means) are functions with tests beside them; the rest is thin I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import httpx
import kopf

from . import analysis, gate, kube, live, machine, metrics, ownership, verdicts
from .manifests import GATEWAY_API, HTTP_PORT, canary_name, deployment, http_route, service
from .rollout import failing_pods_evidence, wait_available
from .smoke import SmokeCase
from .spec import CanaryStep, ModelDeploymentSpec
from .status import StatusWriter, Superseded
from .target import ServingTarget, verified_hash

SCRAPE_TIMEOUT_SECONDS = 2.0
# After a weight change, how long to wait for the Gateway controller to report it, then to let
# requests it routed before that finish, before the canary's pods go (their preStop pause covers the rest).
ROUTE_SETTLE_SECONDS = 10.0
DRAIN_SECONDS = 1.0


class Aborted(Exception):
    """The canary ends without the version: `reason` is the machine event, the message the evidence."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PromoteNow(Exception):
    """A person promoted the canary (`kubectl modelops promote`): the remaining steps are skipped."""


# ---- pure decisions ----------------------------------------------------------------------------


def canary_replicas(stable_replicas: int, weight: int) -> int:
    """Enough canary pods for `weight` percent of the traffic the stable pods carry, at least one: a
    step's share of requests lands on as many pods as it would on the stable side."""
    return max(1, math.ceil(max(1, stable_replicas) * weight / 100))


def planned_looks(steps: list[CanaryStep], interval_seconds: int, max_duration_seconds: int) -> int:
    """The most judgements the whole canary can make: each analysis step looks every interval until
    its window (or, short of traffic, maxDurationSeconds) ends. live.judge divides alpha by this."""
    return max(1, sum(math.ceil(max(s.analysis_seconds, max_duration_seconds) / interval_seconds)
                      for s in steps if s.analysis_seconds is not None))


def applies(md: ModelDeploymentSpec, status: dict[str, Any], target: ServingTarget) -> bool:
    """A canary runs for a new target when there is a verified one to compare it with (a first version
    rolls out as with rolling). reconcile._canary decides what a person's promote or rollback skips."""
    last_good = status.get("lastGood")
    return md.canary and bool(last_good) and verified_hash(last_good) != target.hash()


def route_weight(route: dict[str, Any], name: str) -> int:
    """The weight an HTTPRoute gives the canary's Service (the most of any rule)."""
    return max((b.get("weight", 1) for rule in (route.get("spec") or {}).get("rules") or []
                for b in rule.get("backendRefs") or [] if b.get("name") == canary_name(name)), default=0)


def without_canary(rules: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """An HTTPRoute's rules with the canary's backend at weight 0 and the stable one taking it all."""
    return [{**rule, "backendRefs": [{**b, "weight": 0 if b.get("name") == canary_name(name) else 100}
                                     for b in rule.get("backendRefs") or []]} for rule in rules]


def request_during(req: verdicts.Request | None, version: str, handled: str | None) -> str | None:
    """What a plugin request means to a running canary of `version`: "promote", "abort", or None
    (none, already acted on, or aimed at another version)."""
    if req is None or req.version != version or req.id == handled or req.action not in ("promote", "abort"):
        return None
    return req.action


# ---- I/O ----------------------------------------------------------------------------------------


async def set_weight(w: StatusWriter, md: ModelDeploymentSpec, weight: int) -> None:
    route = http_route(w.name, w.namespace, md, weight)
    kopf.adopt(route, owner=w.body)
    await kube.apply(route)
    metrics.CANARY_WEIGHT.labels(w.namespace, w.name).set(weight)


async def _routed(w: StatusWriter, timeout: float = ROUTE_SETTLE_SECONDS) -> None:
    """Until the Gateway controller reports the route's latest generation (status.parents[].conditions
    observedGeneration), at most `timeout`: it programs a weight before it reports it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = await kube.get(GATEWAY_API, "HTTPRoute", w.name, w.namespace) or {}
        want = (route.get("metadata") or {}).get("generation") or 0
        seen = [c.get("observedGeneration") or 0 for p in (route.get("status") or {}).get("parents") or []
                for c in p.get("conditions") or [] if c.get("type") == "Accepted"]
        if seen and min(seen) >= want:
            return
        await asyncio.sleep(0.5)


async def stop(w: StatusWriter, md: ModelDeploymentSpec) -> None:
    """Weight 0 (once the Gateway took it), then no canary pods; only objects this ModelDeployment
    controls are touched (a taken name is someone else's). Best effort, every call on its own: a
    stop that half fails is done again by the next attempt, which stops any canary first."""
    with contextlib.suppress(Exception):
        route = await ownership.owned(GATEWAY_API, "HTTPRoute", w.name, w.namespace, w.uid)
        if route is not None and route_weight(route, w.name):
            if md.gateway is not None:
                await set_weight(w, md, 0)
            else:  # spec.gateway just went: the route goes with the prune, all to the stable Service till then
                await kube.merge_patch(GATEWAY_API, "HTTPRoute", w.name, w.namespace,
                                       {"spec": {"rules": without_canary(route["spec"]["rules"], w.name)}})
                metrics.CANARY_WEIGHT.labels(w.namespace, w.name).set(0)
            await _routed(w)
            await asyncio.sleep(DRAIN_SECONDS)  # requests the Gateway sent before it took the weight
    with contextlib.suppress(Exception):
        if await ownership.owned("apps/v1", "Deployment", canary_name(w.name), w.namespace, w.uid) is not None:
            await kube.merge_patch("apps/v1", "Deployment", canary_name(w.name), w.namespace,
                                   {"spec": {"replicas": 0}})
    record = w.status.get("canary") or {}
    if record.get("weight"):
        await w.update(canary={**record, "weight": 0})


async def _scrape(client: httpx.AsyncClient, pods: list[dict[str, Any]]) -> dict[str, live.Snapshot]:
    """Each pod's /metrics; a pod that does not answer this time is left out of this look."""

    async def one(pod):
        try:
            res = await client.get(f"http://{pod['status']['podIP']}:{HTTP_PORT}/metrics")
            res.raise_for_status()
            return pod["metadata"]["name"], live.parse(res.text)
        except (httpx.HTTPError, ValueError):
            return pod["metadata"]["name"], None

    return {name: snap for name, snap in await asyncio.gather(*(one(p) for p in pods)) if snap is not None}


def _window(baseline: dict[str, live.Snapshot], now: dict[str, live.Snapshot]) -> live.Snapshot:
    """What the pods answered since the step started, summed (a pod new since then counts whole)."""
    return live.total([live.delta(baseline.get(pod), snap) for pod, snap in now.items()])


class Canary:
    """One canary of `target` for the attempt `w` runs; reconcile.py catches its outcomes."""

    def __init__(self, w: StatusWriter, md: ModelDeploymentSpec, target: ServingTarget,
                 cases: list[SmokeCase], judge: verdicts.ReplayJudge, tracking_uri: str | None):
        self.w, self.md, self.target, self.cases, self.judge = w, md, target, cases, judge
        self.tracking_uri = tracking_uri
        self.version = target.model_version
        self.steps = md.rollout.canary.steps
        spec = md.analysis.live
        self.looks = planned_looks(self.steps, spec.interval_seconds, spec.max_duration_seconds)
        self.thresholds = live.Thresholds(
            min_samples=spec.min_samples, max_error_rate_increase=spec.max_error_rate_increase,
            max_latency_ratio=spec.max_latency_ratio, max_class_shift=spec.max_class_shift,
            max_score_ks=spec.max_score_ks, alpha=spec.alpha)

    @property
    def record(self) -> dict[str, Any]:
        """status.canary while it belongs to this attempt, else {}."""
        c = self.w.status.get("canary") or {}
        return c if c.get("attempt") == (self.w.status.get("attempt") or {}).get("key") else {}

    async def _note(self, **fields: Any) -> None:
        await self.w.update(canary={**self.record, "attempt": self.w.status["attempt"]["key"],
                                    "version": self.version, **fields})

    async def run(self) -> int:
        """Every step from the recorded one on; the weight the canary ended at. Raises Aborted or
        verdicts.Rejected (the canary stopped), PromoteNow or verdicts.Held (it keeps its weight: its
        stable rollout follows, or a person decides), Superseded (stopped, unless the object is gone)."""
        w = self.w
        if self.record.get("passed"):  # re-entered during the stable rollout that follows (a restart)
            return int(self.record.get("weight") or 0)
        if ended := self.record.get("ended"):  # decided before a restart (or a failed stop): decided still
            await stop(w, self.md)
            raise Aborted(ended["reason"], ended["message"])
        try:
            start = int(self.record.get("step") or 0)
            if w.status.get("phase") != "Canary":  # a first start, or a re-entry (a restarted operator)
                again = f" (again from step {start + 1})" if self.record else ""
                await w.phase(machine.next_phase(w.status.get("phase"), "CanaryStarted", True), "CanaryStarted",
                              f"canary of version {self.version}{again}: {len(self.steps)} steps "
                              f"({', '.join(f'{s.weight}%' for s in self.steps)}) beside version "
                              f"{w.status.get('lastGoodModelVersion')}")
            weight = int(self.record.get("weight") or 0)
            await self._claim_traffic(weight)
            for index in range(start, len(self.steps)):
                weight = await self._step(index, self.steps[index])
            await self._poll()  # an abort asked during the last look
            await self._note(passed=True)
            return weight
        except ownership.NotOurs as exc:  # nothing of the taken name is touched
            raise Aborted("Conflict", str(exc)) from exc
        except kube.Invalid as exc:
            await stop(w, self.md)
            raise Aborted("InvalidSpec", f"the API server rejected version {self.version}'s canary: {exc}; "
                                         f"fix the ModelDeployment's spec") from exc
        except (Aborted, verdicts.Rejected) as exc:
            await self._note(ended={"reason": exc.reason, "message": str(exc)})
            await stop(w, self.md)
            raise
        except Superseded as exc:  # the next attempt starts from the stable version
            if "deleted" not in str(exc):
                await stop(w, self.md)
            raise

    async def _claim_traffic(self, weight: int) -> None:
        """The canary's Service and the route (at the canary's current weight), before any canary pod:
        a spec that just turned canary on has neither yet. Nothing is applied when a name is taken."""
        w, md = self.w, self.md
        objs = [service(w.name, w.namespace, md, canary=True), http_route(w.name, w.namespace, md, weight),
                deployment(w.name, w.namespace, md, self.target, canary=True)]
        await ownership.claim(objs, w.uid, w.name)
        for obj in objs[:2]:
            kopf.adopt(obj, owner=w.body)
            await kube.apply(obj)

    async def _step(self, index: int, step: CanaryStep) -> int:
        w, md = self.w, self.md
        await self._scale_up(step.weight, first=index == 0)
        await set_weight(w, md, step.weight)
        await self._note(step=index, weight=step.weight, stepStartedAt=round(time.time(), 3), analysis=None,
                         targetHash=self.target.hash())
        judged = md.analysis.enabled and md.analysis.live.enabled
        kind = "analysis" if step.analysis_seconds is not None and judged else "pause"
        kopf.event(w.body, type="Normal", reason="CanaryStep",
                   message=f"step {index + 1}/{len(self.steps)}: {step.weight}% of the Gateway's traffic to version "
                           f"{self.version}, {kind} {step.seconds}s")
        if kind == "pause":
            await self._wait(step.seconds)
        else:
            await self._analyse(index, step)
        return step.weight

    async def _scale_up(self, weight: int, first: bool) -> None:
        """The canary's pods for this weight, each past its smoke checks (and the first one the replay
        verdict) before the route sends it anything."""
        w, md = self.w, self.md
        stable = await kube.get("apps/v1", "Deployment", w.name, w.namespace) or {}
        replicas = canary_replicas(int((stable.get("spec") or {}).get("replicas") or 1), weight)
        obj = deployment(w.name, w.namespace, md, self.target, canary=True)
        kopf.adopt(obj, owner=w.body)
        await kube.apply(obj)
        await kube.merge_patch("apps/v1", "Deployment", canary_name(w.name), w.namespace,
                               {"spec": {"replicas": replicas}})
        state = await wait_available(
            canary_name(w.name), w.namespace, self.version, md.rollout.progress_deadline_seconds,
            admit=self._admit(self.judge if first else None))
        if state.rejected:
            raise Aborted("VerificationFailed", f"version {self.version}'s canary: {state.message}")
        if state.failed:
            evidence = await failing_pods_evidence(canary_name(w.name), w.namespace, self.version)
            raise Aborted("RolloutFailed", f"version {self.version}'s canary: {state.message}\n{evidence}")

    def _admit(self, judge):
        async def admit():
            await self._poll()
            return await gate.admit_pods(canary_name(self.w.name), self.w.namespace, self.target, self.cases,
                                         self.md.smoke, judge, model=self.w.name)
        return admit

    async def _poll(self) -> None:
        """Between every look: an edit, a moved alias or a delete supersedes; a plugin request acts."""
        latest = await self.w.ensure_current()
        req = verdicts.request_of(latest or self.w.body)
        action = request_during(req, self.version, self.w.status.get("lastRequest"))
        if action is None:
            return
        await self.w.update(lastRequest=req.id)
        if action == "abort":
            raise Aborted("AbortRequested", f"{req.by} aborted the canary of version {self.version}")
        await self.w.update(analysis={**verdicts.current(self.w), "attempt": self.w.status["attempt"]["key"],
                                      "version": self.version, "verdict": "Promoted", "promotedBy": req.by})
        raise PromoteNow(f"{req.by} promoted version {self.version} at canary step "
                         f"{int(self.record.get('step') or 0) + 1}/{len(self.steps)}")

    async def _wait(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await self._poll()
            await asyncio.sleep(min(1.0, max(0.0, until - time.monotonic())))

    async def _analyse(self, index: int, step: CanaryStep) -> None:
        w, spec = self.w, self.md.analysis.live
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_SECONDS) as client:
            self._pods_at_start = set()
            baseline = await self._snapshots(client, remember=True)
            while True:
                await self._wait(spec.interval_seconds)
                await gate.admit_pods(canary_name(w.name), w.namespace, self.target, self.cases, self.md.smoke,
                                      None, model=w.name)  # a restarted canary pod, checked again
                now = await self._snapshots(client)
                for seen, base in zip(now, baseline, strict=True):  # a pod's first answer is its baseline:
                    for pod, snap in seen.items():                  # whole counts only for pods new since
                        base.setdefault(pod, snap if pod in self._pods_at_start else None)
                verdict = live.judge(_window(baseline[0], now[0]), _window(baseline[1], now[1]),
                                     self.thresholds, self.looks)
                decision = live.step_decision(verdict.outcome, time.monotonic() - started, step.analysis_seconds,
                                              max(spec.max_duration_seconds, step.analysis_seconds))
                await self._note(step=index, weight=step.weight, stepStartedAt=self.record.get("stepStartedAt"),
                                 analysis={"verdict": verdict.outcome, "reason": verdict.reason,
                                           "message": verdict.message, **verdict.evidence})
                if decision == "wait":
                    continue
                metrics.VERDICTS.labels("live", verdict.outcome).inc()
                if decision == "pass":
                    return
                await self._settle(index, verdict)
                return

    async def _snapshots(self, client, remember: bool = False
                         ) -> tuple[dict[str, live.Snapshot], dict[str, live.Snapshot]]:
        """(canary pods, stable pods of the verified target), each pod's metrics; `remember`: note which
        pods the step started with."""
        w = self.w
        canary, stable = await asyncio.gather(gate.serving_pods(w.namespace, canary_name(w.name)),
                                              gate.serving_pods(w.namespace, w.name, w.status))
        if remember:
            self._pods_at_start = {p["metadata"]["name"] for p in canary + stable}
        return await asyncio.gather(_scrape(client, canary), _scrape(client, stable))

    async def _settle(self, index: int, verdict: analysis.Verdict) -> None:
        """A failed or Inconclusive step: recorded in status, an Event and on the MLflow version, then
        acted on (spec.analysis.onInconclusive for Inconclusive)."""
        w = self.w
        decision = "reject" if verdict.outcome == "Fail" else analysis.decide(verdict, self.md.analysis.on_inconclusive)
        where = f"canary step {index + 1}/{len(self.steps)} ({self.steps[index].weight}%)"
        await self._note(outcome=verdict.outcome)
        # the attempt's verdict too (status.analysis, status.history, `kubectl modelops status`)
        await w.update(analysis={**verdicts.current(w), "attempt": w.status["attempt"]["key"], "version": self.version,
                                 "comparedWith": w.status.get("lastGoodModelVersion"), "verdict": verdict.outcome,
                                 "reason": verdict.reason, "message": f"{where}: {verdict.message}",
                                 "live": {"verdict": verdict.outcome, "reason": verdict.reason, **verdict.evidence}})
        kopf.event(w.body, type="Warning", reason=verdict.reason,
                   message=f"{where}: live verdict {verdict.outcome}: {verdict.message}")
        asyncio.get_running_loop().run_in_executor(None, verdicts.tag_version, self.tracking_uri, self.md.model.name,
                                                   self.version, verdict)
        if decision == "proceed":
            return
        if decision == "hold":
            raise verdicts.Held(f"{where}: live verdict Inconclusive ({verdict.reason}): {verdict.message}")
        reason = "CanaryFailed" if verdict.outcome == "Fail" else "InconclusiveRejected"
        raise Aborted(reason, f"{where}: live verdict {verdict.outcome} ({verdict.reason}): {verdict.message}")
