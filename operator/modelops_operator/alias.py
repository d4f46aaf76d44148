"""Following MLflow aliases: when an alias moves, record the new version in an annotation.

The annotation change is an ordinary update of the ModelDeployment, so the move goes through the
same reconcile and the same gates as any spec change. Both the poller and the webhook land here.
"""

from __future__ import annotations

import asyncio
import logging

from . import kube
from .config import OperatorConfig
from .resolve import ModelVersionNotFound, RegistryUnavailable, resolve_version
from .spec import ModelRef

# Not under modelops.io/: kopf leaves its own storage prefix out of the diff, and a change there
# would never reach the update handler.
ALIAS_VERSION_ANNOTATION = "alias.modelops.io/version"
log = logging.getLogger(__name__)


async def refresh(md: dict, config: OperatorConfig) -> str | None:
    """Annotate `md` with its alias's current version if it moved; the new version, or None."""
    model = ModelRef.model_validate(md["spec"]["model"])
    if not model.alias or not config.allows(model.tracking_uri):  # the reconcile says why it is refused
        return None
    version = await resolve_version(model, model.tracking_uri or config.tracking_uri)
    meta = md["metadata"]
    if (meta.get("annotations") or {}).get(ALIAS_VERSION_ANNOTATION) == version:
        return None
    await kube.patch_annotations(meta["name"], meta["namespace"], {ALIAS_VERSION_ANNOTATION: version})
    log.info("alias %s of %s now points at version %s", model.alias, model.name, version)
    return version


async def refresh_matching(config: OperatorConfig, namespace: str | None, model_name: str | None = None,
                           alias: str | None = None) -> int:
    """Refresh every alias-tracking ModelDeployment (optionally only those naming model/alias)."""
    moved = 0
    for md in await kube.list_model_deployments(namespace):
        model = md.get("spec", {}).get("model", {})
        if not model.get("alias") or (model_name and model.get("name") != model_name):
            continue
        if alias and model.get("alias") != alias:
            continue
        try:
            moved += await refresh(md, config) is not None
        except (RegistryUnavailable, ModelVersionNotFound) as exc:
            log.warning("cannot refresh %s/%s: %s", md["metadata"]["namespace"], md["metadata"]["name"], exc)
    return moved


async def poll_forever(config: OperatorConfig, namespace: str | None, stopped: asyncio.Event) -> None:
    """The safety net behind webhooks: MLflow may not be configured to send them."""
    while not stopped.is_set():
        try:
            await refresh_matching(config, namespace)
        except Exception:  # the poller must outlive any one failure
            log.exception("alias poll failed")
        try:
            await asyncio.wait_for(stopped.wait(), timeout=config.alias_poll_seconds)
        except TimeoutError:
            pass
