"""Following MLflow aliases: when an alias moves, record the new version in an annotation.

The annotation change is an ordinary update of the ModelDeployment, so the move goes through the
same reconcile and the same gates as any spec change. Both the poller and the webhook land here.
One MLflow lookup serves every ModelDeployment following the same alias on the same server, and a
failure (a missing model, a bad object, a patch refused) is logged and stays with its own group or
object: the others are still refreshed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from modelops_registry import redact_uri

from . import kube
from .config import OperatorConfig
from .machine import ALIAS_VERSION_ANNOTATION
from .peering import Peering, active
from .resolve import ModelVersionNotFound, RegistryUnavailable, resolve_version
from .spec import ModelRef

# Lookups in flight at once: enough that one slow MLflow does not hold up the others, few enough
# that a poll cycle over many aliases does not flood the registry (or the operator's threads).
POLL_CONCURRENCY = 4
log = logging.getLogger(__name__)

Annotate = Callable[[str, str, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class AliasKey:
    """One MLflow lookup: an alias of a registered model on one tracking server."""

    tracking_uri: str | None
    model_name: str
    alias: str


@dataclass(frozen=True)
class Follower:
    """A ModelDeployment following an alias, and the version its annotation records now."""

    namespace: str
    name: str
    version: str | None


def alias_groups(mds: Iterable[dict], config: OperatorConfig, model_name: str | None = None,
                 alias: str | None = None) -> tuple[dict[AliasKey, list[Follower]], list[str]]:
    """The alias-following ModelDeployments (optionally only those naming model/alias) grouped by
    lookup, and one problem sentence per object that cannot be read. Pinned versions and tracking
    URIs the operator refuses are left out silently: the reconcile reports those."""
    groups: dict[AliasKey, list[Follower]] = {}
    problems: list[str] = []
    for md in mds:
        try:
            follower, model = _follower(md)
        except ValidationError as exc:
            fields = "; ".join(f"spec.model.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            problems.append(f"{_where(md)}: cannot follow its alias: {fields}")
            continue
        except (KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{_where(md)}: cannot follow its alias: no {exc} in the object")
            continue
        if not model.alias or not config.allows(model.tracking_uri):
            continue
        if (model_name and model.name != model_name) or (alias and model.alias != alias):
            continue
        key = AliasKey(model.tracking_uri or config.tracking_uri, model.name, model.alias)
        groups.setdefault(key, []).append(follower)
    return groups, problems


def _follower(md: dict) -> tuple[Follower, ModelRef]:
    meta = md["metadata"]
    model = ModelRef.model_validate(md["spec"]["model"])
    version = (meta.get("annotations") or {}).get(ALIAS_VERSION_ANNOTATION)
    return Follower(meta["namespace"], meta["name"], version), model


def _where(md: dict) -> str:
    meta = md.get("metadata") if isinstance(md, dict) else None
    if not isinstance(meta, dict):
        return "a ModelDeployment without metadata"
    return f"{meta.get('namespace')}/{meta.get('name')}"


async def refresh_group(key: AliasKey, followers: list[Follower], annotate: Annotate) -> int:
    """Resolve the alias once and annotate each follower whose version differs; how many moved."""
    version = await resolve_version(ModelRef(name=key.model_name, alias=key.alias), key.tracking_uri)
    moved = 0
    for follower in followers:
        if follower.version == version:
            continue
        try:
            await annotate(follower.name, follower.namespace, {ALIAS_VERSION_ANNOTATION: version})
        except Exception as exc:  # deleted meanwhile, or refused: the other followers still move
            log.warning("cannot record version %s of alias %s on %s/%s: %s", version, key.alias,
                        follower.namespace, follower.name, exc)
            continue
        log.info("alias %s of %s now points at version %s (%s/%s)", key.alias, key.model_name, version,
                 follower.namespace, follower.name)
        moved += 1
    return moved


async def _contained(key: AliasKey, followers: list[Follower], annotate: Annotate,
                     slots: asyncio.Semaphore) -> int:
    async with slots:
        try:
            return await refresh_group(key, followers, annotate)
        except (RegistryUnavailable, ModelVersionNotFound) as exc:
            log.warning("cannot refresh alias %s of %s (followed by %s): %s", key.alias, key.model_name,
                        _names(followers), exc)
        except Exception:  # an unexpected failure must not cost the other groups their refresh
            log.exception("refreshing alias %s of %s at %s (followed by %s) failed", key.alias, key.model_name,
                          redact_uri(key.tracking_uri or "the default MLflow"), _names(followers))
        return 0


def _names(followers: list[Follower]) -> str:
    return ", ".join(f"{f.namespace}/{f.name}" for f in followers)


async def refresh_all(mds: Iterable[dict], config: OperatorConfig, model_name: str | None = None,
                      alias: str | None = None, annotate: Annotate = kube.patch_annotations) -> int:
    """Refresh the given ModelDeployments' aliases, up to POLL_CONCURRENCY lookups at a time; how many moved."""
    groups, problems = alias_groups(mds, config, model_name, alias)
    for problem in problems:
        log.warning("%s", problem)
    slots = asyncio.Semaphore(POLL_CONCURRENCY)
    moved = await asyncio.gather(*(_contained(key, followers, annotate, slots) for key, followers in groups.items()))
    return sum(moved)


async def refresh_matching(config: OperatorConfig, namespace: str | None, model_name: str | None = None,
                           alias: str | None = None) -> int:
    """Refresh every alias-tracking ModelDeployment (optionally only those naming model/alias)."""
    return await refresh_all(await kube.list_model_deployments(namespace), config, model_name, alias)


async def poll_forever(config: OperatorConfig, namespace: str | None, stopped: asyncio.Event,
                       peering: Peering) -> None:
    """The safety net behind webhooks: MLflow may not be configured to send them. Polls only while
    this replica is the one kopf lets act (standby replicas would repeat its lookups and patches)."""
    was_active = None
    while not stopped.is_set():
        try:
            is_active = await active(peering)
            if is_active != was_active:
                log.info("alias poller %s (peering %s, identity %s, priority %d)",
                         "active" if is_active else "standing by", peering.name or "off", peering.identity,
                         peering.priority)
                was_active = is_active
            if is_active:
                await refresh_matching(config, namespace)
        except Exception:  # the poller must outlive any one failure (the API server unreachable, say)
            log.exception("alias poll failed")
        try:
            await asyncio.wait_for(stopped.wait(), timeout=config.alias_poll_seconds)
        except TimeoutError:
            pass
