"""The ModelDeployment state machine.

    Pending -> Exporting -> RollingOut -> Verifying -> Ready
                   |            |            |
                   +------------+------------+--> RolledBack (last good version serving again)
                                                  Failed     (nothing good to return to)
    Exporting, RollingOut --> Held (an Inconclusive behaviour verdict, verdicts.py) --> Exporting (promoted)
    Exporting --> Canary (spec.rollout.strategy canary, canary.py) --> RollingOut (the stable pods move)

Every step is idempotent (exports are reused, children are server-side applied, deadlines live in
status), so a restarted operator re-enters the same attempt and converges. An attempt is one
(generation, model version) pair; a settled attempt is never retried: a new spec or a moved alias
makes a new one, and supersedes an attempt still running within seconds (StatusWriter.ensure_current
on every poll). The decisions (which phase next, which conditions) are pure functions in machine.py.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import kopf

from modelops_registry import ExportRecord, ResolvedVersion

from . import canary, exporting, kube, machine, metrics, ownership, verdicts
from .config import OperatorConfig
from .gate import admit_pods
from .manifests import (
    absent,
    children,
    endpoint_url,
    gateway_defaults,
    keeps_sample,
    replay_secret,
    selector_string,
    with_ingress_host,
)
from .replay import token_for
from .resolve import ModelVersionNotFound, RegistryUnavailable, resolve_model
from .rollout import failing_pods_evidence, wait_available
from .smoke import cases_from_export, cases_from_spec, run_smoke
from .spec import InvalidSpec, ModelDeploymentSpec, ServingSpec
from .status import StatusWriter, Superseded
from .target import ServingTarget


async def reconcile(
    body: kopf.Body, spec: dict, status: dict, logger: logging.Logger, config: OperatorConfig
) -> None:
    started = time.monotonic()
    try:
        try:
            await _reconcile(body, spec, status, logger, config)
        except Superseded as exc:  # the next event (the edit, the move) starts the new attempt
            logger.info(f"attempt superseded: {exc}")
            if "deleted" not in str(exc):
                kopf.event(body, type="Normal", reason="Superseded", message=f"attempt stopped: {exc}")
        metrics.RECONCILES.labels("success").inc()
    except Exception:
        metrics.RECONCILES.labels("failure").inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)


async def _reconcile(body, spec, status, logger, config: OperatorConfig) -> None:
    md = ModelDeploymentSpec.model_validate(dict(spec))
    w = StatusWriter(body, dict(status or {}), logger, history_limit=md.analysis.history_limit)
    tracking_uri = md.model.tracking_uri or config.tracking_uri
    if not config.allows(md.model.tracking_uri):  # refused before any connection is made
        await _end_before_export(w, "disallowed", "TrackingUriNotAllowed", (
            f"spec.model.trackingUri {md.model.tracking_uri} is not an MLflow server this operator may contact: "
            f"use its own ({config.tracking_uri}) or add the URI to the chart value "
            f"operator.allowedTrackingUris (MODELOPS_ALLOWED_TRACKING_URIS)"))
        return
    try:
        md = with_ingress_host(w.name, w.namespace, md, config.ingress_domain)
        md = gateway_defaults(w.name, w.namespace, md, config.gateway, config.ingress_domain)
    except InvalidSpec as exc:
        await _end_before_export(w, "invalid", "InvalidSpec", str(exc))
        return
    # where pods reach MLflow: the spec's server, else the operator's (as pods see it)
    pod_tracking_uri = config.pod_tracking_uri(md.model.tracking_uri)

    try:
        resolved = await resolve_model(md.model, tracking_uri)
    except RegistryUnavailable as exc:
        raise kopf.TemporaryError(f"{exc}; retrying", delay=15) from exc
    except ModelVersionNotFound as exc:
        await _end_before_export(w, "missing", "VersionNotFound", str(exc))
        return
    version = resolved.version
    w.attempt = machine.Attempt(w.uid, w.generation, version, alias=bool(md.model.alias),
                                alias_seen=(body["metadata"].get("annotations") or {}).get(
                                    machine.ALIAS_VERSION_ANNOTATION))

    key = machine.attempt_key(w.generation, f"v{version}")
    if machine.is_settled(w.status, key):
        return
    await w.ensure_current()  # the spec may have moved on while kopf queued this event
    attempt = w.status.get("attempt") or {}
    if attempt.get("key") != key:
        attempt = {"key": key, "startedAt": time.time()}
        if not w.status.get("phase"):
            await w.phase("Pending", "Resolved", f"{md.model.reference} resolved to version {version}")
        # the new target, the phase leaving a settled one and the step conditions reset in one patch:
        # a client never sees the last attempt's Ready or Available beside the next version
        await w.phase("Exporting", "Exporting", f"exporting models:/{md.model.name}/{version} to ONNX",
                      conditions=tuple(machine.attempt_started(version, w.status.get("lastGoodModelVersion"))),
                      attempt=attempt, targetModelVersion=version, selector=selector_string(w.name))
        if (w.status.get("canary") or {}).get("weight"):  # the last attempt's canary (held, superseded)
            await canary.stop(w, md)

    await verdicts.start(w, md, version)
    if w.status.get("phase") == "Held":
        if verdicts.current(w).get("verdict") == "Aborted":
            await roll_back(w, md, "AbortRequested", f"{verdicts.current(w).get('abortedBy')} aborted version "
                                                     f"{version}, held by its verdict")
            return
        if not verdicts.waived(w):  # held until `kubectl modelops promote` (or a new spec or alias)
            return
        held = verdicts.current(w)
        await w.phase(machine.next_phase("Held", "Promoted", True), "Promoted",
                      f"{held.get('promotedBy')} promoted version {version}, held by its verdict "
                      f"({held.get('reason')}: {held.get('message')})")
    try:
        await verdicts.registry_gate(w, md, resolved, tracking_uri)
    except verdicts.Rejected as exc:
        await _give_up(w, exc.reason, f"version {version} was not shipped: {exc}")
        return
    except verdicts.Held as exc:
        await _hold(w, version, str(exc))
        return

    record = await _export(w, md, resolved, tracking_uri, pod_tracking_uri, config)
    if record is None:
        return
    await w.ensure_current()
    target = ServingTarget(
        model_version=version,
        model_uri=record.onnx_uri,
        sha256=record.sha256,
        image=md.serving.image or config.serving_image,
        tracking_uri=pod_tracking_uri,
        serving=md.serving.model_dump(mode="json", by_alias=True, exclude_none=True),
    )
    judge = verdicts.ReplayJudge(w, md, resolved, record.outputs[0].name if record.outputs else None,
                                 tracking_uri, config.replay_key)
    moved = await _canary(w, md, target, record, judge, tracking_uri)
    if moved is None:
        return
    weight, reason, why = moved
    try:
        rolled_out = await _roll_out(w, md, target, record, judge, canary_weight=weight, reason=reason, message=why)
    except Superseded as exc:
        if md.canary and "deleted" not in str(exc):
            await canary.stop(w, md)
        raise
    if md.canary:  # the Gateway's traffic back to the stable Service, now the version (or the last good)
        await canary.stop(w, md)
    if not rolled_out:
        return
    await w.ensure_current()
    if not await _verify(w, md, record):
        return
    await w.ensure_current()
    url = endpoint_url(w.name, w.namespace, md)
    await w.phase(
        machine.next_phase(w.status.get("phase"), "Verified", True), "Ready", f"version {version} is serving at {url}",
        conditions=(
            ("Verified", True, "ChecksPassed", "smoke checks passed"),
            ("RolledBack", False, "Healthy", f"version {version} is serving"),
            ("Degraded", False, "Healthy", f"version {version} is serving"),
            machine.ready(True, "Ready", f"version {version} is serving at {url}"),
        ),
        modelVersion=version, lastGoodModelVersion=version, lastGood=target.to_status(), url=url,
    )


async def _canary(w: StatusWriter, md: ModelDeploymentSpec, target: ServingTarget, record: ExportRecord,
                  judge: verdicts.ReplayJudge, tracking_uri: str | None) -> tuple[int, str, str] | None:
    """Run the canary when one applies; how the stable rollout that follows starts (the canary's weight
    to keep meanwhile, the reason and message of its phase), or None when the attempt settled."""
    version = target.model_version
    verdict = verdicts.current(w)
    if verdict.get("verdict") == "Skipped":  # a person asked for this version (kubectl modelops rollback)
        return 0, "RollbackRequested", f"rolling back to version {version}, as {verdict.get('message')}"
    if not canary.applies(md, w.status, target):
        return 0, "RollingOut", f"rolling out version {version}"
    run = canary.Canary(w, md, target, smoke_cases(md, record), judge, tracking_uri)
    if verdicts.waived(w) and run.record.get("weight"):  # promoted while held at a step: the remaining
        return run.record["weight"], "Promoted", f"version {version} was promoted: rolling it out"  # steps go
    try:
        weight = await run.run()
    except canary.PromoteNow as exc:
        return int(run.record.get("weight") or 0), "Promoted", f"{exc}: rolling it out"
    except (canary.Aborted, verdicts.Rejected) as exc:
        await w.conditions(("Verified", False, exc.reason, str(exc)))
        await _give_up(w, exc.reason, f"version {version} was not shipped: {exc}")
        return None
    except verdicts.Held as exc:
        await _hold(w, version, str(exc))
        return None
    return weight, "CanaryPassed", (f"every canary step of version {version} passed: the stable pods move to it "
                                    f"while the canary keeps {weight}%")


async def _end_before_export(w: StatusWriter, suffix: str, reason: str, message: str) -> None:
    """Settle an attempt that cannot start (a refused URI, a missing version), once per generation."""
    key = machine.attempt_key(w.generation, suffix)
    if machine.is_settled(w.status, key):
        return
    await w.update(attempt={"key": key})
    await _give_up(w, reason, message)


async def _export(w: StatusWriter, md: ModelDeploymentSpec, resolved: ResolvedVersion, tracking_uri: str | None,
                  job_tracking_uri: str | None, config: OperatorConfig) -> ExportRecord | None:
    """Export (or reuse) the ONNX artifact behind the parity gate, in a Job; None when it failed."""
    version = resolved.version
    if w.status.get("phase") != "Exporting":  # a queued or retried export comes back here: one Event
        await w.phase("Exporting", "Exporting", f"exporting models:/{md.model.name}/{version} to ONNX")
    started = time.monotonic()
    try:
        record = await exporting.export(w, md, resolved, tracking_uri, job_tracking_uri, config)
    except exporting.ExportRejected as exc:
        metrics.EXPORTS.labels("failure").inc()
        await w.conditions(("Exported", False, "ExportFailed", f"{exc.reason}: {exc}"))
        await _give_up(w, "ExportFailed", f"version {version} was not shipped: {exc.reason}: {exc}")
        return None
    metrics.EXPORT_SECONDS.observe(time.monotonic() - started)
    await w.mark("exported")
    await w.update(export={"uri": record.onnx_uri, "sha256": record.sha256,
                           "parity": _json_safe(asdict(record.parity))})
    await w.conditions(("Exported", True, "ParityVerified",
                        f"version {version} exported to {record.onnx_uri} (parity within tolerance)"))
    return record


def _json_safe(value: Any) -> Any:
    """Kubernetes rejects NaN/Infinity in JSON: spell non-finite numbers as strings."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


async def apply_children(w: StatusWriter, md: ModelDeploymentSpec, target: ServingTarget,
                         canary_weight: int = 0) -> None:
    """Server-side apply every child (owned by the ModelDeployment), then replicas, then prune.

    Raises ownership.NotOurs (before anything is applied) when a child's name is taken by an object
    this ModelDeployment does not control, and kube.Invalid when the API server rejects a child."""
    objs = children(w.name, w.namespace, md, target, canary_weight)
    uid = w.body["metadata"]["uid"]
    await ownership.claim(objs, uid, w.name)
    existed = await kube.get("apps/v1", "Deployment", w.name, w.namespace) is not None
    for obj in objs:
        kopf.adopt(obj, owner=w.body)
    for obj in objs:  # all accepted before any is stored: a rejected Ingress never half-ships a version
        await kube.apply(obj, dry_run=True)
    for obj in objs:
        await kube.apply(obj)
    await _scale(w, md, fresh=not existed)
    for api_version, kind, name in absent(w.name, md):
        await ownership.delete_owned(api_version, kind, name, w.namespace, uid)


async def _scale(w: StatusWriter, md: ModelDeploymentSpec, fresh: bool) -> None:
    """Set replicas only when the spec's count changed (or the Deployment is new): with an HPA the
    HPA owns the count, and a user's `kubectl scale` is not undone on every reconcile."""
    if md.autoscaling:
        if w.status.get("appliedReplicas") == 0:  # a failed first version was scaled to zero, and
            await kube.merge_patch(                 # an HPA never scales a Deployment up from zero
                "apps/v1", "Deployment", w.name, w.namespace, {"spec": {"replicas": md.autoscaling.min_replicas}}
            )
        await w.update(appliedReplicas=None)
        return
    want = md.desired_replicas
    if fresh or w.status.get("appliedReplicas") != want:
        await kube.merge_patch("apps/v1", "Deployment", w.name, w.namespace, {"spec": {"replicas": want}})
        await w.update(appliedReplicas=want)


async def _roll_out(w: StatusWriter, md: ModelDeploymentSpec, target: ServingTarget, record: ExportRecord,
                    judge: verdicts.ReplayJudge, canary_weight: int = 0, reason: str = "RollingOut",
                    message: str | None = None) -> bool:
    await w.phase("RollingOut", reason, message or f"rolling out version {target.model_version}")
    started = time.monotonic()
    try:
        if keeps_sample(md):  # before the pods that read it; create-only (see manifests.replay_secret)
            secret = replay_secret(w.name, w.namespace, token_for(judge.key, w.uid))
            kopf.adopt(secret, owner=w.body)
            await kube.create(secret)
        await apply_children(w, md, target, canary_weight)
    except ownership.NotOurs as exc:
        await _give_up(w, "Conflict", str(exc))
        return False
    except kube.Invalid as exc:
        await _give_up(w, "InvalidSpec", f"the API server rejected version {target.model_version}'s "
                                         f"children: {exc}; fix the ModelDeployment's spec")
        return False
    cases = smoke_cases(md, record)
    try:
        state = await wait_available(
            w.name, w.namespace, target.model_version, md.rollout.progress_deadline_seconds,
            seen=w.status["attempt"].get("progress"),
            remember=lambda progress: w.update(attempt={**w.status["attempt"], "progress": progress}),
            admit=_current(w, lambda: admit_pods(w.name, w.namespace, target, cases, md.smoke, judge)))
    except verdicts.Rejected as exc:  # the new pod answers unlike the version it replaces: never admitted
        await w.conditions(("Verified", False, exc.reason, str(exc)))
        await roll_back(w, md, exc.reason, f"version {target.model_version}: {exc}")
        return False
    except verdicts.Held as exc:
        await _hold(w, target.model_version, str(exc))
        return False
    if state.rejected:  # a new pod answered wrongly before it took any traffic
        await _verification_failed(w, md, state.message)
        return False
    if state.failed:
        metrics.ROLLOUTS.labels("failure").inc()
        evidence = await failing_pods_evidence(w.name, w.namespace, target.model_version)
        await w.conditions(("Available", False, "RolloutFailed", f"{state.message}\n{evidence}"))
        await roll_back(w, md, "RolloutFailed", f"version {target.model_version}: {state.message}\n{evidence}")
        return False
    metrics.ROLLOUTS.labels("success").inc()
    metrics.ROLLOUT_SECONDS.observe(time.monotonic() - started)
    await w.mark("available")
    await w.conditions(("Available", True, "RolloutComplete", state.message))
    return True


def smoke_cases(md: ModelDeploymentSpec, record: ExportRecord) -> list:
    """The user's requests when given, else one per row of the model's logged input example."""
    return cases_from_spec(md.smoke) or cases_from_export(record)


async def _verify(w: StatusWriter, md: ModelDeploymentSpec, record: ExportRecord) -> bool:
    await w.phase("Verifying", "Verifying", "sending smoke checks through the Service")
    svc = await kube.get("v1", "Service", w.name, w.namespace)
    base_url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    cases = smoke_cases(md, record)
    result = await run_smoke(base_url, w.name, cases, md.smoke, version=str(w.status.get("targetModelVersion")))
    await w.mark("verified")
    if result.ok(md.smoke.min_success_rate):
        metrics.SMOKE_CHECKS.labels("success").inc()
        return True
    await _verification_failed(w, md, result.evidence())
    return False


def _current(w: StatusWriter, admit):
    """`admit` for wait_available, first checking that the attempt still applies: a poll a second
    is how an edit or a moved alias stops a rollout (or a rollback) within seconds."""

    async def checked():
        await w.ensure_current()
        return await admit()

    return checked


async def _verification_failed(w: StatusWriter, md: ModelDeploymentSpec, evidence: str) -> None:
    metrics.SMOKE_CHECKS.labels("failure").inc()
    await w.conditions(("Verified", False, "VerificationFailed", evidence))
    await roll_back(w, md, "VerificationFailed", f"version {w.status.get('targetModelVersion')}: {evidence}")


async def roll_back(w: StatusWriter, md: ModelDeploymentSpec, reason: str, evidence: str) -> None:
    """Restore the last good pod template and wait for it; with none, stop the failed version."""
    await w.mark("failed")
    last_good = ServingTarget.from_status(w.status.get("lastGood"))
    if last_good is None:
        await ownership.delete_owned("autoscaling/v2", "HorizontalPodAutoscaler", w.name, w.namespace,
                                     w.body["metadata"]["uid"])
        await kube.merge_patch("apps/v1", "Deployment", w.name, w.namespace, {"spec": {"replicas": 0}})
        await w.update(appliedReplicas=0)
        await _give_up(w, reason, f"{evidence}\nno earlier good version: scaled to zero")
        return
    metrics.ROLLBACKS.labels(reason).inc()
    kopf.event(w.body, type="Warning", reason="RollingBack",
               message=f"{reason}: restoring version {last_good.model_version}")
    if last_good.serving is not None:  # the serving settings that worked, not the ones that just failed
        md = md.model_copy(update={"serving": ServingSpec.model_validate(last_good.serving)})
    await apply_children(w, md, last_good)
    if md.canary:
        await canary.stop(w, md)
    state = await wait_available(w.name, w.namespace, last_good.model_version, md.rollout.progress_deadline_seconds,
                                 admit=_current(w, lambda: admit_pods(w.name, w.namespace, last_good, None, md.smoke)))
    if state.done:
        await w.mark("restored")
    await w.phase(
        machine.next_phase(w.status.get("phase"), reason, True), reason,
        f"{evidence}\nrestored version {last_good.model_version}", warning=True,
        conditions=(
            ("RolledBack", True, reason, evidence),
            ("Degraded", not state.done, reason if not state.done else "LastGoodServing",
             f"restored version {last_good.model_version}: {state.message}"),
            machine.ready(False, reason, f"version {w.status.get('targetModelVersion')} is not serving: {reason}; "
                                         f"version {last_good.model_version} serves instead"),
        ),
        modelVersion=last_good.model_version)


async def _hold(w: StatusWriter, version: str, message: str) -> None:
    """Keep the version out of traffic until a person decides (spec.analysis.onInconclusive: hold)."""
    promote = f"kubectl modelops promote {w.name} -n {w.namespace}"
    serving = w.status.get("lastGoodModelVersion")
    await w.phase(machine.next_phase(w.status.get("phase"), "AnalysisInconclusive", True), "AnalysisInconclusive",
                  f"version {version} is held: {message}; `{promote}` ships it", warning=True, conditions=(
                      ("Verified", None, "AnalysisInconclusive", message),
                      machine.ready(False, "AnalysisInconclusive",
                                    f"version {version} is held for a decision ({promote}); "
                                    f"version {serving} keeps serving")))


async def _give_up(w: StatusWriter, reason: str, message: str) -> None:
    """End an attempt that shipped nothing new: RolledBack when a good version still serves."""
    serving = w.status.get("lastGoodModelVersion") if w.status.get("lastGood") else None
    phase = machine.next_phase(w.status.get("phase"), reason, serving is not None)
    not_ready = machine.ready(False, reason, message)
    if serving is not None:
        metrics.ROLLBACKS.labels(reason).inc()
        await w.phase(phase, reason, f"{message}\nversion {serving} keeps serving", warning=True, conditions=(
            ("RolledBack", True, reason, message),
            ("Degraded", False, "LastGoodServing", f"version {serving} keeps serving"), not_ready))
    else:
        await w.phase(phase, reason, message, warning=True, conditions=(("Degraded", True, reason, message), not_ready))
