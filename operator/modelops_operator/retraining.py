"""Retraining, the I/O: record alert triggers, act on triggers once, follow the Jobs to their end.

Why an annotation and not an in-memory queue between the webhook and the reconcile: the annotation is
stored by the API server, so a trigger survives an operator restart, reaches whichever replica is
active (the Service may send Alertmanager to a paused one), and arrives as an ordinary update in the
ModelDeployment's own handler queue, where kopf runs one handler at a time per object: two triggers
(an alert and a request) never race each other for the cooldown. Redelivered notifications only
rewrite the annotation (and not even that in the cooldown); each id is acted on once
(status.retrain.lastAlertId, status.lastRequest). The Job follower runs on the Jobs' queue, so both
write only their own leaves of status.retrain (retrain.record_ops, retrain.result_ops), never the
whole record. The decisions are pure functions in retrain.py.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from . import kube, metrics, retrain
from .config import OperatorConfig
from .spec import ModelDeploymentSpec
from .status import StatusWriter, Superseded
from .webhooks import FiringAlert

JOB_API = "batch/v1"
MD_API = f"{kube.GROUP}/{kube.VERSION}"
MAX_NAME_TRIES = 5
log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The API server could not be asked (the webhook answers 503, and Alertmanager retries)."""


async def record_alerts(targets: dict[tuple[str, str], list[FiringAlert]],
                        namespace: str | None) -> tuple[list[str], int]:
    """Annotate each ModelDeployment with spec.retrain that a firing alert names; (the "ns/name"s
    triggered, how many named none: absent, without spec.retrain, outside the watched namespace, about a
    version it no longer serves, or in its cooldown, when a trigger would only be skipped)."""
    triggered, ignored = [], 0
    for (ns, name), alerts in sorted(targets.items()):
        try:
            why, alertname = await _record(ns, name, alerts, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise Unavailable(f"cannot record the trigger on {ns}/{name}: {exc.status} {exc.reason}") from exc
            why, alertname = "it was deleted", None  # between the read and the patch
        except HTTPError as exc:
            raise Unavailable(f"cannot reach the API server to record the trigger on {ns}/{name}: {exc}") from exc
        if why:
            log.info("alert for %s/%s ignored: %s", ns, name, why)
            ignored += 1
            continue
        log.info("alert %s triggers retraining of %s/%s", alertname, ns, name)
        triggered.append(f"{ns}/{name}")
    return triggered, ignored


async def _record(ns: str, name: str, alerts: list[FiringAlert],
                  namespace: str | None) -> tuple[str | None, str | None]:
    """(why the alerts are ignored, None) or (None, the alert recorded as the trigger)."""
    if namespace and ns != namespace:
        return f"outside the watched namespace {namespace}", None
    md = await kube.get(MD_API, "ModelDeployment", name, ns)
    if md is None or not (md.get("spec") or {}).get("retrain"):
        return "no such ModelDeployment with spec.retrain", None
    status = md.get("status") or {}
    served = None if status.get("modelVersion") is None else str(status["modelVersion"])
    alert = next((a for a in alerts if a.model_version is None or a.model_version == served), None)
    if alert is None:  # a replaced version's alerts keep firing for the drift window after a rollout
        return (f"about version {', '.join(sorted({str(a.model_version) for a in alerts}))}, "
                f"not the served {served}"), None
    until = retrain.parse_time((status.get("retrain") or {}).get("nextAllowedAt"))
    if until is not None and retrain.now_utc() < until:  # each delivery would only be RetrainSkipped
        return f"in the retrain cooldown until {retrain.stamp(until)}", None
    await kube.patch_annotations(name, ns, {retrain.ALERT_ANNOTATION: retrain.alert_annotation(alert.alertname)})
    return None, alert.alertname


async def act_on_triggers(body: kopf.Body, spec: dict, status: dict, logger: logging.Logger,
                          config: OperatorConfig) -> None:
    """Start a retrain Job, or refuse with Event RetrainSkipped, for each trigger not acted on yet."""
    triggers = retrain.pending(dict(body["metadata"]), dict(status or {}))
    if not triggers:
        return
    w = StatusWriter(body, dict(status or {}), logger)
    try:
        md = ModelDeploymentSpec.model_validate(dict(spec))
    except ValidationError:
        md = None
    try:
        for trigger in triggers:
            await _act(w, md, trigger, config)
    except Superseded:  # deleted meanwhile: nothing to retrain
        return


async def _act(w: StatusWriter, md: ModelDeploymentSpec | None, trigger: retrain.Trigger,
               config: OperatorConfig) -> None:
    jobs = [j for j in await kube.list_objects(JOB_API, "Job", w.namespace, f"{retrain.RETRAIN_LABEL}={w.name}")
            if retrain.owned_by(j, w.uid)]
    now = retrain.now_utc()
    # an earlier operator created this trigger's Job, then stopped before recording it: it is the start
    started = next((j for j in jobs if retrain.trigger_id_of(j) == trigger.id), None)
    if started is None:
        active = [j["metadata"]["name"] for j in jobs if retrain.result(j) is None]
        decision = retrain.decide(md.retrain if md else None, w.status, active, now)
        if not decision.start:
            await _handled(w, trigger, {}, "Skipped", decision.message)
            metrics.RETRAINS.labels("Skipped").inc()
            kopf.event(w.body, type="Normal", reason="RetrainSkipped", message=f"{_who(trigger)}: {decision.message}")
            return
        started = await _create(w, md, trigger, config)
        if started is None:
            return
    else:
        now = retrain.parse_time(started["metadata"].get("creationTimestamp")) or now
    name = started["metadata"]["name"]
    record = {"jobsStarted": max(retrain.number_of(name), _jobs_started(w)),
              "lastJob": {"name": name, "started": retrain.stamp(now)},
              "nextAllowedAt": retrain.next_allowed(md.retrain, now) if md and md.retrain else None}
    message = f"{_who(trigger)}: retrain Job {name} started"
    await _handled(w, trigger, record, "Started", message)
    metrics.RETRAINS.labels("Started").inc()
    kopf.event(w.body, type="Normal", reason="RetrainStarted", message=message)
    job = await kube.get(JOB_API, "Job", name, w.namespace)  # one that ended before lastJob named it
    if job is not None:
        await job_changed(job)


def _jobs_started(w: StatusWriter) -> int:
    return int((w.status.get("retrain") or {}).get("jobsStarted") or 0)


async def _create(w: StatusWriter, md: ModelDeploymentSpec | None, trigger: retrain.Trigger,
                  config: OperatorConfig) -> dict[str, Any] | None:
    """Create the next retrain Job: a name taken by this trigger's Job (another replica, an earlier
    attempt) is the start; one taken by another Job, the number after it. None when the API server
    rejected it (recorded as RetrainFailed: the trigger is acted on)."""
    assert md is not None and md.retrain is not None  # decide() starts nothing without spec.retrain
    tracking_uri = config.pod_tracking_uri(md.model.tracking_uri)
    n = _jobs_started(w)
    for _ in range(MAX_NAME_TRIES):
        n += 1
        manifest = retrain.job(w.name, w.namespace, n, md, trigger, tracking_uri, w.body)
        try:
            created = await kube.create(manifest)
        except kube.Invalid as exc:
            message = (f"the API server rejected retrain Job {manifest['metadata']['name']}: {exc}; "
                       f"fix spec.retrain.template")
            await _handled(w, trigger, {}, "Failed", message)
            metrics.RETRAINS.labels("Failed").inc()
            kopf.event(w.body, type="Warning", reason="RetrainFailed", message=message)
            return None
        if created is not None:
            return created
        taken = await kube.get(JOB_API, "Job", manifest["metadata"]["name"], w.namespace)
        if taken is not None and retrain.trigger_id_of(taken) == trigger.id and retrain.owned_by(taken, w.uid):
            return taken
    await _write(w, {"jobsStarted": n})  # the retry starts after these names, not at the same n forever
    raise kopf.TemporaryError(f"retrain Jobs {w.name}-retrain-* up to {n} exist already", delay=30)


async def _handled(w: StatusWriter, trigger: retrain.Trigger, record: dict[str, Any], outcome: str,
                   message: str) -> None:
    """status.retrain's leaves (and status.lastRequest for a request) in one patch: the trigger is acted on."""
    fields = {**record, "lastTrigger": {**trigger.to_status(), "outcome": outcome, "message": retrain.cap(message)}}
    if trigger.source == "alert":
        fields["lastAlertId"] = trigger.id
    await _write(w, fields, last_request=trigger.id if trigger.source == "request" else None)


async def _write(w: StatusWriter, fields: dict[str, Any], last_request: str | None = None) -> None:
    """Patch leaves of status.retrain, creating it first (a merge patch: one made meanwhile is kept)."""
    if "retrain" not in w.status:
        await kube.patch_status(w.name, w.namespace, {"retrain": {}})
        w.status["retrain"] = {}
    try:
        await kube.patch_status_of(w.uid, w.name, w.namespace, retrain.record_ops(w.uid, fields, last_request))
    except kube.Gone as exc:
        raise Superseded(str(exc)) from exc
    w.status["retrain"] = {**w.status["retrain"], **{k: v for k, v in fields.items() if v is not None}}
    if last_request is not None:
        w.status["lastRequest"] = last_request


def _who(trigger: retrain.Trigger) -> str:
    return f"alert {trigger.alert}" if trigger.source == "alert" else f"{trigger.by} asked"


async def job_changed(job: dict[str, Any]) -> None:
    """A retrain Job ended: record its result in its ModelDeployment's status.retrain.lastJob, once,
    with Event RetrainSucceeded or RetrainFailed. A Job that is not the last one started is left alone;
    only lastJob's result leaves are written, and only while lastJob still names this Job."""
    outcome = retrain.result(job)
    meta = job["metadata"]
    if outcome is None:
        return
    name = (meta.get("labels") or {}).get(retrain.RETRAIN_LABEL)
    md = await kube.get(MD_API, "ModelDeployment", name, meta["namespace"]) if name else None
    if md is None or not retrain.owned_by(job, md["metadata"]["uid"]):
        return
    last = ((md.get("status") or {}).get("retrain") or {}).get("lastJob") or {}
    if last.get("name") != meta["name"] or last.get("result"):
        return
    result, message, finished = outcome
    try:
        await kube.patch_status_of(md["metadata"]["uid"], name, meta["namespace"],
                                   retrain.result_ops(md["metadata"]["uid"], meta["name"], result, message, finished))
    except kube.Gone:
        return
    except ApiException as exc:
        if exc.status == 422 and not await _still_last(meta["name"], name, meta["namespace"]):
            return  # the test op failed: a newer Job started meanwhile, and this one's result is not the news
        raise
    kopf.event(md, type="Normal" if result == "Succeeded" else "Warning", reason=f"Retrain{result}",
               message=message)
    log.info("%s/%s: %s", meta["namespace"], name, message)


async def _still_last(job_name: str, name: str, namespace: str) -> bool:
    md = await kube.get(MD_API, "ModelDeployment", name, namespace)
    last = (((md or {}).get("status") or {}).get("retrain") or {}).get("lastJob") or {}
    return last.get("name") == job_name
