"""kopf handlers: thin wrappers that hand each event to the state machine in reconcile.py."""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

from modelops_registry import redact_uri

from . import alias, gate, http_server, kube, metrics, retrain, retraining
from .config import OperatorConfig
from .manifests import MANAGED_LABELS, SERVING_POD_LABELS, managed_selector, owner_of, serving_pods_selector
from .peering import Peering
from .reconcile import reconcile

GROUP, VERSION, PLURAL = kube.GROUP, kube.VERSION, kube.PLURAL
PREFIX = "modelops.io"
PODS, DEPLOYMENTS, JOBS = ("", "v1", "pods"), ("apps", "v1", "deployments"), ("batch", "v1", "jobs")
# retrain Jobs only: export Jobs are followed by the reconcile that started them (exporting.py)
WATCH_SELECTORS = {PODS: serving_pods_selector(), DEPLOYMENTS: managed_selector(), JOBS: retrain.RETRAIN_LABEL}
SWEEP_SECONDS = 30.0


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
    filter_watches(settings)
    memo.config = OperatorConfig.from_env()
    memo.stopped = asyncio.Event()
    namespace = os.environ.get("MODELOPS_WATCH_NAMESPACE") or None
    # main() puts this replica's peering in the memo; run any other way (`kopf run`), it is standalone
    peering = memo.get("peering") or Peering(None, "standalone")
    memo.tasks = [
        asyncio.create_task(http_server.serve(memo.config, namespace, memo.stopped)),
        asyncio.create_task(alias.poll_forever(memo.config, namespace, memo.stopped, peering)),
        asyncio.create_task(sweep_forever(namespace, memo.stopped, logger)),
    ]
    logger.info("modelops operator started (MLflow %s, serving image %s, export image %s)",
                redact_uri(memo.config.tracking_uri), memo.config.serving_image, memo.config.export.image)


def filter_watches(settings: kopf.OperatorSettings) -> None:
    """Have the API server filter the pod and Deployment watches by label: the handlers' `labels=` alone
    are applied by kopf after every pod and Deployment of the cluster has streamed through the operator."""
    for resource, selector in WATCH_SELECTORS.items():
        settings.watching.label_selectors[resource] = selector


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_) -> None:
    memo.stopped.set()
    await asyncio.gather(*memo.tasks, return_exceptions=True)


# Registered before the reconcile, so a trigger is acted on before a long rollout step of the same object.
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def retrain_on_trigger(body, spec, status, logger, memo: kopf.Memo, **_) -> None:
    """A retrain request (plugin) or alert (webhook) annotation not acted on yet: start a Job or refuse."""
    await retraining.act_on_triggers(body, spec, status, logger, memo.config)


@kopf.on.event(*JOBS, labels={retrain.RETRAIN_LABEL: kopf.PRESENT})
async def follow_retrain_jobs(body, **_) -> None:
    """A retrain Job ended (or the operator started and lists it): RetrainSucceeded/RetrainFailed, once."""
    await retraining.job_changed(dict(body))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_model_deployment(body, spec, status, logger, memo: kopf.Memo, **_) -> None:
    await reconcile(body, spec, status, logger, memo.config)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_model_deployment(name: str, namespace: str, **_) -> None:
    """Children go with owner references; only our metric series need forgetting (no finalizer)."""
    metrics.forget(namespace, name)


# serving pods only (the API server filters by WATCH_SELECTORS; labels= repeats it for kopf's own matching)
@kopf.on.event(*PODS, labels=SERVING_POD_LABELS)
async def admit_serving_pods(body, **_) -> None:
    """Pods of the verified target (HPA scale-ups, rescheduled pods, a restored last good target) pass
    the readiness gate without new checks; a new target's pods wait for the reconcile's checks."""
    if not gate.awaiting_gate(body):
        return
    meta = body["metadata"]
    name = owner_of(meta["labels"])
    owner = await kube.get(f"{GROUP}/{VERSION}", "ModelDeployment", name, meta["namespace"])
    await gate.sweep(meta["namespace"], name, (owner or {}).get("status"))


async def sweep_forever(namespace: str | None, stopped: asyncio.Event, logger: logging.Logger) -> None:
    """Every SWEEP_SECONDS, admit pods of verified targets that no event brought (gate.sweep_all)."""
    while not stopped.is_set():
        try:
            await gate.sweep_all(namespace)
        except Exception as exc:  # the API server blinked: the next round tries again
            logger.warning("sweeping pods waiting at the readiness gate failed: %s", exc)
        try:
            await asyncio.wait_for(stopped.wait(), timeout=SWEEP_SECONDS)
        except TimeoutError:
            pass


@kopf.on.event(*DEPLOYMENTS, labels=MANAGED_LABELS)
async def mirror_replicas(body, **_) -> None:
    """Copy the Deployment's replica counts to its ModelDeployment (printer columns, scale)."""
    owners = [o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == "ModelDeployment"
              and o.get("name") == body["metadata"]["name"]]  # the stable Deployment's, not a canary's
    if not owners:
        return
    status = body.get("status") or {}
    await kube.patch_status(owners[0]["name"], body["metadata"]["namespace"], {
        "replicas": status.get("replicas") or 0,
        "readyReplicas": status.get("readyReplicas") or 0,
    })
