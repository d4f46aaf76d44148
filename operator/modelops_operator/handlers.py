"""kopf handlers: thin wrappers that hand each event to the state machine in reconcile.py."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

from modelops_registry import redact_uri

from . import alias, gate, http_server, kube, metrics
from .config import OperatorConfig
from .peering import Peering
from .reconcile import reconcile

GROUP, VERSION, PLURAL = kube.GROUP, kube.VERSION, kube.PLURAL
PREFIX = "modelops.io"


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    # Fixed once: changing where kopf keeps progress later would re-run every handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    memo.config = OperatorConfig.from_env()
    memo.stopped = asyncio.Event()
    namespace = os.environ.get("MODELOPS_WATCH_NAMESPACE") or None
    # main() puts this replica's peering in the memo; run any other way (`kopf run`), it is standalone
    peering = memo.get("peering") or Peering(None, "standalone")
    memo.tasks = [
        asyncio.create_task(http_server.serve(memo.config, namespace, memo.stopped)),
        asyncio.create_task(alias.poll_forever(memo.config, namespace, memo.stopped, peering)),
    ]
    logger.info("modelops operator started (MLflow %s, serving image %s, export image %s)",
                redact_uri(memo.config.tracking_uri), memo.config.serving_image, memo.config.export.image)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_) -> None:
    memo.stopped.set()
    await asyncio.gather(*memo.tasks, return_exceptions=True)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_model_deployment(body, spec, status, logger, memo: kopf.Memo, **_) -> None:
    await reconcile(body, spec, status, logger, memo.config)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_model_deployment(name: str, namespace: str, **_) -> None:
    """Children go with owner references; only our metric series need forgetting (no finalizer)."""
    metrics.forget(namespace, name)


# serving pods only: export Jobs' pods carry the managed-by label too, and no readiness gate
@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/name": "modelops-serve",
                                         "app.kubernetes.io/managed-by": "modelops-operator"})
async def admit_serving_pods(body, **_) -> None:
    """Pods of the version already serving (HPA scale-ups, rescheduled pods, a restored last good
    version) pass the readiness gate without new checks; a new version's pods wait for the reconcile."""
    if not gate.awaiting_gate(body):
        return
    meta = body["metadata"]
    owner = await kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", meta["labels"]["app.kubernetes.io/instance"],
                           meta["namespace"])
    serving = ((owner or {}).get("status") or {}).get("modelVersion")
    if serving is not None and gate.pod_version(body) == serving:
        await gate.open_gate(body, "ServingVersion", f"version {serving} is the verified serving version")


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": "modelops-operator"})
async def mirror_replicas(body, **_) -> None:
    """Copy the Deployment's replica counts to its ModelDeployment (printer columns, scale)."""
    owners = [o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == "ModelDeployment"]
    if not owners:
        return
    status = body.get("status") or {}
    await kube.patch_status(owners[0]["name"], body["metadata"]["namespace"], {
        "replicas": status.get("replicas") or 0,
        "readyReplicas": status.get("readyReplicas") or 0,
    })
