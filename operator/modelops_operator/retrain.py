"""Retraining, the pure part: which trigger is new, whether it may start a Job, the Job itself, and
what a finished Job says.

A trigger comes from one of two annotations on the ModelDeployment: the plugin's request
(`kubectl modelops retrain`, action retrain) or the Alertmanager webhook's. Both are ordinary object
updates, so the operator meets them in the ModelDeployment's own handler queue (one at a time, after a
restart too) and acts on each id once. The I/O is in retraining.py.
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .manifests import job_container_security_context, owner_reference, pod_security_context
from .spec import ModelDeploymentSpec, RetrainSpec
from .verdicts import REQUEST_ANNOTATION

RETRAIN_LABEL = "modelops.io/retrain-of"
COMPONENT = "modelops-retrain"
TRIGGER_ANNOTATION = "modelops.io/retrain-trigger"
# Where the Alertmanager webhook records a trigger. Not under modelops.io/ (kopf's prefix, left out of
# the diff), so that the write reaches the update handler, as the plugin's request does.
ALERT_ANNOTATION = "alertmanager.modelops.io/trigger"
MAX_NAME = 63
FINISHED_TTL_SECONDS = 86400  # a finished Job (and its pod's log) stays a day for people to read
TMP_VOLUME = "modelops-tmp"
MAX_FIELD = 253  # who, which alert, a message: an annotation is anyone's text, status fields stay bounded


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def stamp(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def cap(text: str, limit: int = MAX_FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def trusted_time(value: Any, now: datetime.datetime) -> str:
    """`value` as a status date-time, or `now` when it is none: a hand-written annotation's `at` must
    not make every status patch fail validation (format: date-time)."""
    when = parse_time(value) if isinstance(value, str) and len(value) <= 64 else None
    return stamp(when or now)


@dataclass(frozen=True)
class Trigger:
    """One request to retrain: who or what asked, when, and its id (acted on once)."""

    source: Literal["alert", "request"]
    id: str
    by: str
    at: str
    alert: str | None = None

    def to_status(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def alert_annotation(alert: str, at: datetime.datetime | None = None) -> str:
    """The webhook's annotation value for one firing alert (a fresh id per delivery)."""
    return json.dumps({"alert": alert, "by": "alertmanager", "at": stamp(at or now_utc()), "id": uuid.uuid4().hex})


def pending(meta: dict[str, Any], status: dict[str, Any], now: datetime.datetime | None = None) -> list[Trigger]:
    """The triggers on the object not acted on yet: the plugin's retrain request unless status.lastRequest
    names it, the webhook's alert unless status.retrain.lastAlertId does. Unreadable values are ignored;
    what goes to status is bounded (`at` a valid time, else `now`; text capped at MAX_FIELD)."""
    annotations = meta.get("annotations") or {}
    now = now or now_utc()
    found = []
    req = _json(annotations.get(REQUEST_ANNOTATION))
    if req.get("action") == "retrain" and req.get("id") and cap(str(req["id"])) != status.get("lastRequest"):
        found.append(Trigger("request", cap(str(req["id"])), cap(str(req.get("by") or "unknown")),
                             trusted_time(req.get("at"), now)))
    alert = _json(annotations.get(ALERT_ANNOTATION))
    if alert.get("id") and cap(str(alert["id"])) != (status.get("retrain") or {}).get("lastAlertId"):
        found.append(Trigger("alert", cap(str(alert["id"])), cap(str(alert.get("by") or "alertmanager")),
                             trusted_time(alert.get("at"), now), cap(str(alert.get("alert") or ""))))
    return found


def _json(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Decision:
    """Start a Job, or refuse (reason NotConfigured, Cooldown, MaxConcurrent) saying why."""

    start: bool
    reason: str
    message: str


def decide(retrain: RetrainSpec | None, status: dict[str, Any], active_jobs: list[str],
           now: datetime.datetime) -> Decision:
    """Whether a trigger at `now` may start a retrain Job. The cooldown runs from the last Job's start
    under the spec's cooldownSeconds as it is now (lowering it takes effect at once)."""
    if retrain is None:
        return Decision(False, "NotConfigured", "retrain refused: the ModelDeployment has no spec.retrain")
    started = parse_time(((status.get("retrain") or {}).get("lastJob") or {}).get("started"))
    if started is not None:
        until = started + datetime.timedelta(seconds=retrain.cooldown_seconds)
        if now < until:
            return Decision(False, "Cooldown", f"retrain refused: cooldown until {stamp(until)} (the last retrain "
                            f"Job started at {stamp(started)}; spec.retrain.cooldownSeconds "
                            f"{retrain.cooldown_seconds})")
    if len(active_jobs) >= retrain.max_concurrent:
        return Decision(False, "MaxConcurrent", f"retrain refused: maxConcurrent {retrain.max_concurrent} reached "
                        f"(running: {', '.join(sorted(active_jobs))})")
    return Decision(True, "Started", "retrain allowed")


def next_allowed(retrain: RetrainSpec, started: datetime.datetime) -> str:
    return stamp(started + datetime.timedelta(seconds=retrain.cooldown_seconds))


def record_ops(uid: str, fields: dict[str, Any], last_request: str | None = None) -> list[dict[str, Any]]:
    """The JSON patch writing `fields` as leaves of status.retrain (lastTrigger, lastAlertId, jobsStarted,
    nextAllowedAt, lastJob; None left out) and status.lastRequest, on the object with `uid` only. Leaves,
    not status.retrain whole: the Job follower writes lastJob's result meanwhile from another queue, and a
    record built from an older read would erase it. status.retrain must exist (retraining.py makes it)."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    ops += [{"op": "add", "path": f"/status/retrain/{key}", "value": value}
            for key, value in fields.items() if value is not None]
    if last_request is not None:
        ops.append({"op": "add", "path": "/status/lastRequest", "value": last_request})
    return ops


def result_ops(uid: str, job_name: str, result: str, message: str, finished: str | None) -> list[dict[str, Any]]:
    """The JSON patch recording a finished Job in status.retrain.lastJob, applied only while lastJob
    still names that Job (the test op: a newer Job started meanwhile makes the patch fail, leaving it)."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid},
                                 {"op": "test", "path": "/status/retrain/lastJob/name", "value": job_name}]
    values = {"result": result, "message": cap(message), "finished": finished}
    return ops + [{"op": "add", "path": f"/status/retrain/lastJob/{k}", "value": v}
                  for k, v in values.items() if v is not None]


def job_name(md_name: str, n: int) -> str:
    """`<md>-retrain-<n>`, the ModelDeployment's part shortened so that the whole is a DNS label (63)."""
    suffix = f"-retrain-{n}"
    return md_name[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def number_of(job_name: str) -> int:
    """n of `<md>-retrain-<n>` (0 for any other name)."""
    tail = job_name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def labels(md_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/managed-by": "modelops-operator",
            RETRAIN_LABEL: md_name}


def _env(container: dict[str, Any], ours: list[dict[str, Any]], tracking_uri: str | None) -> list[dict[str, Any]]:
    """The container's env with ours set (replacing same-named entries); MLFLOW_TRACKING_URI only when
    the container does not set its own."""
    names = {e["name"] for e in ours}
    theirs = [e for e in container.get("env") or [] if e.get("name") not in names]
    env = [*theirs, *ours]
    if tracking_uri and not any(e.get("name") == "MLFLOW_TRACKING_URI" for e in theirs):
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    if not any(e.get("name") == "HOME" for e in env):  # the root filesystem is read-only: caches go to /tmp
        env.append({"name": "HOME", "value": "/tmp"})
    return env


def _container(container: dict[str, Any], ours: list[dict[str, Any]], tracking_uri: str | None,
               credentials_secret: str | None) -> dict[str, Any]:
    c = copy.deepcopy(container)
    c["env"] = _env(c, ours, tracking_uri)
    c["securityContext"] = {**job_container_security_context(), **(c.get("securityContext") or {})}
    mounts = c.get("volumeMounts") or []
    if not any(m.get("mountPath") == "/tmp" for m in mounts):
        c["volumeMounts"] = [*mounts, {"name": TMP_VOLUME, "mountPath": "/tmp"}]
    if credentials_secret:  # the model's MLflow credentials, as the export Job gets them
        c["envFrom"] = [*(c.get("envFrom") or []), {"secretRef": {"name": credentials_secret}}]
    return c


def job(md_name: str, namespace: str, n: int, md: ModelDeploymentSpec, trigger: Trigger,
        tracking_uri: str | None, owner: dict[str, Any]) -> dict[str, Any]:
    """Retrain Job number `n` of a ModelDeployment (which must have spec.retrain), controlled by it.
    The user's pod template wins where it speaks, except for the variables the operator sets; what it
    leaves out gets the export Job's conventions."""
    retrain = md.retrain
    assert retrain is not None
    template = copy.deepcopy(retrain.template)
    pod = dict(template.get("spec") or {})
    ours = [{"name": "MODELOPS_RETRAIN_TRIGGER", "value": json.dumps(trigger.to_status(), sort_keys=True)},
            {"name": "MODELOPS_MODEL_NAME", "value": md.model.name}]
    if md.model.alias:
        ours.append({"name": "MODELOPS_ALIAS", "value": md.model.alias})
    pod["containers"] = [_container(c, ours, tracking_uri, md.model.credentials_secret) for c in pod["containers"]]
    pod.setdefault("restartPolicy", "Never")
    pod.setdefault("automountServiceAccountToken", False)
    pod.setdefault("enableServiceLinks", False)
    pod["securityContext"] = {**pod_security_context(), **(pod.get("securityContext") or {})}
    volumes = pod.get("volumes") or []
    if any(m["name"] == TMP_VOLUME for c in pod["containers"] for m in c["volumeMounts"]) and \
            not any(v.get("name") == TMP_VOLUME for v in volumes):
        pod["volumes"] = [*volumes, {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "4Gi"}}]
    meta = dict(template.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels(md_name)}
    spec: dict[str, Any] = {"backoffLimit": retrain.backoff_limit, "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
                            "template": {"metadata": meta, "spec": pod}}
    if retrain.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = retrain.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(md_name, n),
            "namespace": namespace,
            "labels": labels(md_name),
            "annotations": {TRIGGER_ANNOTATION: json.dumps(trigger.to_status(), sort_keys=True)},
            "ownerReferences": [owner_reference(owner, controller=True)],
        },
        "spec": spec,
    }


def trigger_id_of(job: dict[str, Any]) -> str | None:
    """The id of the trigger a retrain Job was started for (its annotation)."""
    return _json(((job.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)).get("id")


def owned_by(job: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (job.get("metadata") or {}).get("ownerReferences") or [])


def result(job: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(Succeeded|Failed, message, finish time) of a finished Job; None while it runs."""
    status = job.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        when = parse_time(c.get("lastTransitionTime") or status.get("completionTime"))
        at = stamp(when) if when else None
        if c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded", f"retrain Job {job['metadata']['name']} succeeded", at
        if c.get("type") in ("Failed", "FailureTarget"):
            why = ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
            return "Failed", f"retrain Job {job['metadata']['name']} failed" + (f" ({why})" if why else ""), at
    return None
