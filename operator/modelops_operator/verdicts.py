"""Verdicts on a version's behaviour against the version it replaces, before any user sees it.

Two steps, each a pure judgement (analysis.py) between thin I/O:
- the registry gate, before export: the candidate run's logged metric against the serving version's;
- the paired replay, when the candidate's first pod has passed its own checks and waits at the
  readiness gate: the same inputs to that pod and a serving pod (replay.py).
A Fail rejects the version (its gate stays closed, the last good version keeps serving); an
Inconclusive does what spec.analysis.onInconclusive says (hold: phase Held, until `kubectl modelops
promote`). Every verdict lands in status.analysis, an Event (Warning on Fail), tags on the MLflow
version and, for a replay, a plot on the candidate's run, because people would rather look than read.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import kopf

from modelops_registry import RegistryAnswer, ResolvedVersion
from modelops_registry.client import first_line, is_unavailable
from modelops_registry.reader import reader

from . import analysis, gate, metrics, replay
from .manifests import keeps_sample
from .spec import ModelDeploymentSpec
from .status import StatusWriter
from .verdict_plot import render_svg

log = logging.getLogger(__name__)

# Where the plugin asks for a promotion or a rollback (kubectl-modelops). Not under modelops.io/:
# kopf leaves its own prefix out of the diff, and the request must reach the update handler.
REQUEST_ANNOTATION = "kubectl.modelops.io/request"
PLOT_ARTIFACT = "modelops/verdict-v{version}.svg"
WAIVED = ("Promoted", "Skipped")  # a person decided: no (further) verdict for this attempt


class Rejected(Exception):
    """The verdict refuses the version; `reason` is the machine event, the message the evidence."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Held(Exception):
    """The verdict is Inconclusive and spec.analysis.onInconclusive is hold."""


@dataclass(frozen=True)
class Request:
    action: str
    version: str
    by: str
    id: str


def request_of(body: dict[str, Any]) -> Request | None:
    """The plugin's latest request on the object, or None (absent or unreadable)."""
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(REQUEST_ANNOTATION)
    try:
        d = json.loads(raw) if raw else None
        return Request(str(d["action"]), str(d["version"]), str(d.get("by") or "unknown"), str(d.get("id") or ""))
    except (ValueError, TypeError, KeyError):
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current(w: StatusWriter) -> dict[str, Any]:
    """status.analysis when it belongs to the running attempt, else {}."""
    a = w.status.get("analysis") or {}
    return a if a.get("attempt") == (w.status.get("attempt") or {}).get("key") else {}


def waived(w: StatusWriter) -> bool:
    """A person promoted the attempt's version (or asked for it by rollback): no verdict applies."""
    return current(w).get("verdict") in WAIVED


async def start(w: StatusWriter, md: ModelDeploymentSpec, version: str) -> None:
    """At an attempt's start or re-entry: honour a plugin request aimed at this version, once (a running
    canary polls for requests itself, canary.request_during)."""
    req = request_of(w.body)
    if req is None or req.version != version or w.status.get("lastRequest") == req.id:
        return
    if req.action == "promote" and w.status.get("phase") == "Held":  # the Event comes with the phase
        await w.update(lastRequest=req.id, analysis={**current(w), "verdict": "Promoted", "promotedBy": req.by})
    elif req.action == "abort" and w.status.get("phase") == "Held":  # a running canary acts on it itself
        await w.update(lastRequest=req.id, analysis={**current(w), "verdict": "Aborted", "abortedBy": req.by})
    elif req.action == "rollback":
        kopf.event(w.body, type="Normal", reason="RollbackRequested",
                   message=f"{req.by} asked to roll back to version {version}; its verdict is skipped")
        await w.update(lastRequest=req.id, analysis={
            "attempt": w.status["attempt"]["key"], "version": version, "verdict": "Skipped",
            "reason": "RollbackRequested", "message": f"{req.by} asked for version {version}"})


def _compared(w: StatusWriter, md: ModelDeploymentSpec, version: str) -> str | None:
    """The serving version a candidate is judged against, or None when there is nothing to judge."""
    if not md.analysis.enabled or waived(w) or not w.status.get("lastGood"):
        return None
    serving = w.status.get("lastGoodModelVersion")
    return serving if serving and serving != version else None


async def _settle(w: StatusWriter, md: ModelDeploymentSpec, step: str, verdict: analysis.Verdict,
                  version: str, serving: str, tracking_uri: str | None) -> None:
    """Record one step's verdict everywhere, then act on it: return, or raise Rejected / Held."""
    decision = analysis.decide(verdict, md.analysis.on_inconclusive)
    record = {**current(w), "attempt": w.status["attempt"]["key"], "version": version, "comparedWith": serving,
              "verdict": verdict.outcome if decision != "proceed" or verdict.outcome == "Pass" else "Proceeded",
              "reason": verdict.reason, "message": verdict.message, "decidedAt": _now(),
              step: {"verdict": verdict.outcome, "reason": verdict.reason, **verdict.evidence}}
    await w.update(analysis=record)
    metrics.VERDICTS.labels(step, verdict.outcome).inc()
    kopf.event(w.body, type="Warning" if verdict.outcome == "Fail" else "Normal",
               reason=verdict.reason, message=f"{step} verdict {verdict.outcome}: {verdict.message}")
    # in the background: two registry writes are no reason to keep a passed pod at its gate
    asyncio.get_running_loop().run_in_executor(None, tag_version, tracking_uri, md.model.name, version, verdict)
    if decision == "reject":
        raise Rejected("InconclusiveRejected" if verdict.outcome == "Inconclusive" else
                       ("RegistryMetricRegressed" if step == "registry" else "BehaviourRegressed"),
                       f"{step} verdict {verdict.outcome} ({verdict.reason}): {verdict.message}")
    if decision == "hold":
        raise Held(f"{step} verdict Inconclusive ({verdict.reason}): {verdict.message}")


def tag_version(tracking_uri: str | None, model: str, version: str, verdict: analysis.Verdict) -> None:
    """modelops.verdict / modelops.verdict_reason on the MLflow version: the registry shows which
    versions were refused and why. Best effort: a registry that refuses writes loses no rollout."""
    try:
        rd = reader(tracking_uri)
        rd.set_model_version_tag(model, version, "modelops.verdict", verdict.outcome)
        why = f"{verdict.reason}: {verdict.message}"[:5000]  # MLflow caps tag values
        rd.set_model_version_tag(model, version, "modelops.verdict_reason", why)
    except Exception as exc:  # noqa: BLE001 - logged; the verdict stands in status and Events
        log.warning("tagging version %s of %s with its verdict failed: %s", version, model, first_line(exc))


def _run_metrics(tracking_uri: str | None, model: str, version: str, run_id: str | None) -> dict[str, float]:
    rd = reader(tracking_uri)
    run_id = run_id or rd.get_model_version(model, version).run_id
    return rd.get_run(run_id).metrics if run_id else {}


async def registry_gate(w: StatusWriter, md: ModelDeploymentSpec, resolved: ResolvedVersion,
                        tracking_uri: str | None) -> None:
    """Before export: the candidate's logged metric against the serving version's."""
    version = resolved.version
    serving = _compared(w, md, version)
    if serving is None or not md.analysis.registry.enabled or current(w).get("registry"):
        return
    gate_spec = md.analysis.registry
    try:
        theirs, ours = await asyncio.gather(
            asyncio.to_thread(_run_metrics, tracking_uri, md.model.name, version, resolved.run_id),
            asyncio.to_thread(_run_metrics, tracking_uri, md.model.name, serving, None))
    except Exception as exc:
        if is_unavailable(exc):
            raise kopf.TemporaryError(f"MLflow unreachable reading run metrics: {first_line(exc)}", delay=15) from exc
        if not isinstance(exc, RegistryAnswer):
            raise
        theirs, ours = {}, {}
    verdict = analysis.registry_gate(theirs, ours, gate_spec.metric, gate_spec.max_regression,
                                     candidate_version=version, serving_version=serving)
    await _settle(w, md, "registry", verdict, version, serving, tracking_uri)


class ReplayJudge:
    """Called by gate.admit_pods for each candidate pod that passed its own checks, before its gate
    opens: the first call replays and judges (raising Rejected or Held); later calls admit."""

    def __init__(self, w: StatusWriter, md: ModelDeploymentSpec, resolved: ResolvedVersion, output: str | None,
                 tracking_uri: str | None, key: bytes):
        self.w, self.md, self.resolved, self.output = w, md, resolved, output
        self.tracking_uri, self.key = tracking_uri, key
        self._evaluation: asyncio.Future | None = None
        if _compared(w, md, resolved.version) is not None and md.analysis.replay.enabled:
            # read while the candidate's pods start, not once the first one waits at its gate
            self._evaluation = asyncio.ensure_future(
                asyncio.to_thread(replay.evaluation_set, tracking_uri, resolved.run_id))

    async def __call__(self, pod: dict[str, Any]) -> None:
        w, md, version = self.w, self.md, self.resolved.version
        serving = _compared(w, md, version)
        if serving is None or not md.analysis.replay.enabled or current(w).get("replay"):
            return
        verdict, scores = await self._judge(pod, serving)
        if scores is not None:
            asyncio.get_running_loop().run_in_executor(None, self._plot, *scores, serving)
        await _settle(w, md, "replay", verdict, version, serving, self.tracking_uri)

    async def _judge(self, pod: dict[str, Any], serving: str):
        w, md, spec = self.w, self.md, self.md.analysis.replay
        peer = await serving_pod(w)
        thresholds = analysis.Thresholds(
            max_flip_rate=spec.max_flip_rate, max_mean_score_delta=spec.max_mean_score_delta,
            max_score_psi=spec.max_score_psi, max_accuracy_drop=spec.max_accuracy_drop, min_samples=spec.min_samples)
        notes: list[str] = []
        sample = replay.ReplaySet()
        if peer is None:
            return _inconclusive("NoServingPod", f"no ready pod of version {serving} to compare with"), None
        if keeps_sample(md):
            async with httpx.AsyncClient(timeout=replay.TIMEOUT_SECONDS) as client:
                sample, why = await replay.production_sample(client, peer["status"]["podIP"], w.name,
                                                             replay.token_for(self.key, w.uid), spec.sample_rows)
            if why:
                notes.append(why)
        evaluation, why = await (self._evaluation or asyncio.to_thread(
            replay.evaluation_set, self.tracking_uri, self.resolved.run_id))
        if why:
            notes.append(why)
        try:
            rs = sample.extend(evaluation)
        except replay.ReplayError as exc:  # the evaluation set does not fit the serving inputs: use the sample
            notes.append(str(exc))
            rs = sample
        sources = {"production": sample.rows, "evaluation": evaluation.rows}
        if not rs.rows:
            return _inconclusive("NoReplayInputs", "nothing to replay: " + "; ".join(notes) +
                                 "; log an evaluation set with the model (README: Evaluation set format) or let "
                                 "the serving version see traffic"), None
        try:
            serving_scores, candidate_scores = await replay.replay(
                pod["status"]["podIP"], peer["status"]["podIP"], w.name, rs, self.output)
        except replay.ServingPodFailed as exc:  # no evidence either way: the whole attempt step is retried
            raise kopf.TemporaryError(f"the serving pod did not answer the replay: {exc}", delay=5) from exc
        except replay.ReplayError as exc:
            return analysis.Verdict("Fail", "ReplayFailed", f"the candidate could not answer inputs version "
                                    f"{serving} answers: {exc}", {"sources": sources, "notes": notes}), None
        try:
            verdict = analysis.compare(serving_scores, candidate_scores, rs.labels, thresholds, serving_version=serving,
                                       candidate_version=self.resolved.version, sources=sources)
        except ValueError as exc:  # e.g. a label outside the model's classes: the set, not the version, is wrong
            return _inconclusive("UnusableReplay", f"the replayed answers cannot be compared: {exc}"), None
        if notes:
            verdict = analysis.Verdict(verdict.outcome, verdict.reason, verdict.message,
                                       {**verdict.evidence, "notes": notes})
        return verdict, (serving_scores, candidate_scores)

    def _plot(self, serving_scores, candidate_scores, serving: str) -> None:
        """The score distributions and flip matrix, on the candidate's run (best effort, in a thread)."""
        run_id = self.resolved.run_id
        if not run_id:
            return
        try:
            svg = render_svg(serving_scores, candidate_scores, serving, self.resolved.version)
            reader(self.tracking_uri).upload_artifact(run_id, PLOT_ARTIFACT.format(version=self.resolved.version),
                                                     svg.encode())
        except Exception as exc:  # noqa: BLE001 - the verdict stands without its picture
            log.warning("logging the verdict plot to run %s failed: %s", run_id, first_line(exc))


def _inconclusive(reason: str, message: str) -> analysis.Verdict:
    return analysis.Verdict("Inconclusive", reason, message, {})


async def serving_pod(w: StatusWriter) -> dict[str, Any] | None:
    """A ready, admitted pod of the verified target (status.lastGood): the version being replaced."""
    return next(iter(await gate.serving_pods(w.namespace, w.name, w.status)), None)
