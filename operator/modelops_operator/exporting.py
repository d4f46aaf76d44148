"""Running an export: reuse a complete one, else create or join its Job and follow it to the end.

The decisions (names, manifests, what a Job's state means) are pure functions in exports.py; this
module only talks to MLflow and the API server. The operator never imports the exporter: it reads
the result the Job leaves in its termination message and the export.json it logged to MLflow.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import kopf

from modelops_registry import ExportRecord, RegistryUnavailable, ResolvedVersion, find_export, read_export, redact_text

from . import exports, kube, metrics
from .config import OperatorConfig
from .spec import ModelDeploymentSpec
from .status import StatusWriter

POLL_SECONDS = 2.0
QUEUED_RETRY_SECONDS = 5
RETRY_SECONDS = 30
JOB_API = "batch/v1"
# count-then-create is one step within this operator (kopf runs handlers of many objects at once)
_start_lock = asyncio.Lock()


class ExportRejected(Exception):
    """The version cannot be exported (the exporter said so, or its pod died): a human must act."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


async def export(w: StatusWriter, md: ModelDeploymentSpec, resolved: ResolvedVersion, tracking_uri: str | None,
                 job_tracking_uri: str | None, config: OperatorConfig) -> ExportRecord:
    """The export record of `resolved` under `md.export`; raises ExportRejected, or kopf.TemporaryError
    while queued or after a retryable failure."""
    record = await _registry(w, find_export, tracking_uri, resolved, opset=md.export.opset,
                             quantize=md.export.quantize, tolerance=md.export.tolerance)
    if record is not None:
        metrics.EXPORTS.labels("reused").inc()
        return record
    digest = exports.settings_hash(md.model.name, resolved.version, md, config.export.image)
    name = exports.job_name(md.model.name, resolved.version, digest)
    job = await kube.get(JOB_API, "Job", name, w.namespace)
    if job is not None and exports.failed_before(job, (w.status.get("attempt") or {}).get("startedAt")):
        await kube.delete_background(JOB_API, "Job", name, w.namespace)  # an earlier attempt's failure
        job = None
    if job is None:
        await _start(w, md, resolved.version, digest, name, job_tracking_uri, config)
    else:
        await _join(w, job)
    return await _follow(w, name, tracking_uri, resolved)


async def _start(w: StatusWriter, md: ModelDeploymentSpec, version: str, digest: str, name: str,
                 job_tracking_uri: str | None, config: OperatorConfig) -> None:
    async with _start_lock:
        running = [j for j in await kube.list_objects(JOB_API, "Job", _watch_namespace(), exports.active_selector())
                   if not _finished(j)]
        if len(running) >= config.max_concurrent_exports:
            names = ", ".join(f"{j['metadata']['namespace']}/{j['metadata']['name']}" for j in running[:3])
            message = (f"waiting for a free export slot: {len(running)} export Jobs run ({names}), the limit is "
                       f"{config.max_concurrent_exports} (chart value exports.maxConcurrent)")
            await _condition(w, "ExportQueued", message)
            raise kopf.TemporaryError(message, delay=QUEUED_RETRY_SECONDS)
        if config.export_network_policy:
            await _ensure_network_policy(w.namespace, job_tracking_uri)
        manifest = exports.job(name, w.namespace, md, version, digest, job_tracking_uri, config.export, w.body)
        try:
            created = await kube.create(manifest)
        except kube.Invalid as exc:  # e.g. spec.export.resources requests above limits
            raise ExportRejected("InvalidSpec", f"the API server rejected export Job {name}: {exc}; fix "
                                 "spec.export") from exc
        if created is None:  # another ModelDeployment's reconcile created it first, or it is still going
            existing = await kube.get(JOB_API, "Job", name, w.namespace)
            if existing is None or (existing["metadata"].get("deletionTimestamp")):
                raise kopf.TemporaryError(f"export Job {name} is being replaced", delay=POLL_SECONDS)
            await _join(w, existing)
            return
    kopf.event(w.body, type="Normal", reason="ExportStarted",
               message=f"export Job {name} started for models:/{md.model.name}/{version}")
    await _condition(w, "ExportRunning", f"export Job {name} started")


async def _join(w: StatusWriter, job: dict[str, Any]) -> None:
    """Become an owner of a Job another ModelDeployment (or an earlier operator) started."""
    meta = job["metadata"]
    owners = exports.joined_owners(meta.get("ownerReferences"), w.body)
    if owners is not None:
        await kube.merge_patch(JOB_API, "Job", meta["name"], w.namespace, {"metadata": {"ownerReferences": owners}})
    await _condition(w, "ExportRunning", f"following export Job {meta['name']}")


async def _follow(w: StatusWriter, name: str, tracking_uri: str | None, resolved: ResolvedVersion) -> ExportRecord:
    last = None
    while True:
        job = await kube.get(JOB_API, "Job", name, w.namespace)
        if job is None:
            raise kopf.TemporaryError(f"export Job {name} disappeared; starting again", delay=POLL_SECONDS)
        pods = await kube.list_objects("v1", "Pod", w.namespace, f"job-name={name}")
        outcome = exports.outcome(job, pods)
        if outcome.state == "Succeeded":
            return await _read(w, name, outcome.result or {}, tracking_uri, resolved)
        if outcome.state == "Failed":
            message = redact_text(outcome.message)
            if outcome.retryable:
                await kube.delete_background(JOB_API, "Job", name, w.namespace)
                await _condition(w, "ExportRetrying", f"export Job {name}: {message}; retrying in {RETRY_SECONDS} s")
                raise kopf.TemporaryError(f"export Job {name} failed, retrying: {message}", delay=RETRY_SECONDS)
            tail = await _log_tail(pods)
            raise ExportRejected(outcome.reason, f"export Job {name}: {message}" + (f"\nlog tail:\n{tail}" if tail
                                                                                      else ""))
        if (outcome.reason, outcome.message) != last:
            last = (outcome.reason, outcome.message)
            await _condition(w, outcome.reason, f"export Job {name}: {redact_text(outcome.message)}")
        await w.ensure_current()  # an edit stops the wait (the Job goes on: another attempt may join it)
        await asyncio.sleep(POLL_SECONDS)


async def _registry(w: StatusWriter, call, *args, **kwargs):
    """A registry call in a thread; MLflow unreachable means try again later, not a failed export."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except RegistryUnavailable as exc:
        await _condition(w, "ExportRetrying", str(exc))
        raise kopf.TemporaryError(f"{exc}; retrying", delay=15) from exc


async def _read(w: StatusWriter, name: str, result: dict, tracking_uri: str | None,
                resolved: ResolvedVersion) -> ExportRecord:
    run_id, path = result.get("run_id"), result.get("artifact_path")
    record = None
    if run_id and path:
        record = await _registry(w, read_export, tracking_uri, run_id, path)
    if record is None or record.version != resolved.version:
        raise ExportRejected("ExportFailed", f"export Job {name} succeeded but its export.json "
                             f"(run {run_id}, {path}) is missing or names another version")
    metrics.EXPORTS.labels("success").inc()
    return record


async def _log_tail(pods: list[dict]) -> str:
    for pod in exports.newest_first(pods):
        tail = await kube.pod_log_tail(pod["metadata"]["name"], pod["metadata"]["namespace"])
        if tail.strip():
            return redact_text(tail.strip())[-1500:]
    return ""


async def _condition(w: StatusWriter, reason: str, message: str) -> None:
    await w.conditions(("Exported", False, reason, message))


async def _ensure_network_policy(namespace: str, job_tracking_uri: str | None) -> None:
    """Export pods may reach DNS and MLflow only. Never takes over a NetworkPolicy of someone else's."""
    existing = await kube.get("networking.k8s.io/v1", "NetworkPolicy", exports.NETWORK_POLICY_NAME, namespace)
    if existing and (existing["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") != \
            "modelops-operator":
        raise ExportRejected("Conflict", f"NetworkPolicy {namespace}/{exports.NETWORK_POLICY_NAME} exists and is "
                             "not managed by modelops: rename or remove it, or set exports.networkPolicy.enabled=false")
    peer, port = await _mlflow_peer(job_tracking_uri)
    await kube.apply(exports.network_policy(namespace, peer, port))


async def _mlflow_peer(tracking_uri: str | None) -> tuple[dict | None, int | str | None]:
    host, port, service, service_ns = exports.mlflow_address(tracking_uri)
    if host is None:
        return None, None
    if service:
        svc = await kube.get("v1", "Service", service, service_ns)
        if svc and (svc.get("spec") or {}).get("selector"):
            target = next((p.get("targetPort") or p.get("port") for p in svc["spec"].get("ports") or []
                           if p.get("port") == port), port)
            return ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": service_ns}},
                     "podSelector": {"matchLabels": svc["spec"]["selector"]}}, target)
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise kopf.TemporaryError(f"cannot resolve MLflow host {host} for the export NetworkPolicy: {exc}",
                                  delay=RETRY_SECONDS) from exc
    addresses = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    if not addresses:
        return None, port
    # one peer per address: a NetworkPolicyPeer holds a single ipBlock
    return {"ipBlock": {"cidr": f"{addresses[0]}/32"}}, port


def _finished(job: dict) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _watch_namespace() -> str | None:
    return os.environ.get("MODELOPS_WATCH_NAMESPACE") or None
