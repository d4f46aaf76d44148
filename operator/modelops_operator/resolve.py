"""Resolve what a ModelDeployment names in MLflow (a version, or an alias as it stands now).

A thin async face over modelops_registry, the one registry client: the lookup, the HTTP settings
and the "not found" codes live there. One attempt per call: the operator's own retry loop
(kopf.TemporaryError, the alias poller) decides when to try again, so a reconcile never sleeps here.
"""

from __future__ import annotations

import asyncio

from modelops_registry import ModelRef as RegistryRef
from modelops_registry import ModelVersionNotFound, RegistryUnavailable, ResolvedVersion, RetryPolicy, resolve
from modelops_registry.redact import redact_text

from .spec import ModelRef

__all__ = ["ModelVersionNotFound", "RegistryUnavailable", "resolve_model", "resolve_version", "resolve_version_sync"]

ONE_ATTEMPT = RetryPolicy(attempts=1)


def resolve_model_sync(model: ModelRef, tracking_uri: str | None) -> ResolvedVersion:
    """The concrete version (run, source, alias) the spec names; blocking.

    ModelVersionNotFound says which versions and aliases exist; every other failure (MLflow down,
    an error answer) is RegistryUnavailable, retried by the caller, with credentials redacted.
    """
    ref = RegistryRef(model.name, model.version, model.alias)
    try:
        return resolve(tracking_uri, ref, policy=ONE_ATTEMPT)
    except ModelVersionNotFound as exc:
        raise ModelVersionNotFound(f"spec.model: {exc}") from exc
    except RegistryUnavailable:
        raise
    except Exception as exc:  # an MLflow refusal other than "not found", or a transport error
        where = redact_text(tracking_uri or "the default MLflow tracking URI")
        raise RegistryUnavailable(
            f"MLflow at {where} failed to resolve {ref.uri}: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        ) from exc


def resolve_version_sync(model: ModelRef, tracking_uri: str | None) -> str:
    return resolve_model_sync(model, tracking_uri).version


async def resolve_model(model: ModelRef, tracking_uri: str | None) -> ResolvedVersion:
    """``resolve_model_sync`` in a thread: the MLflow client blocks, the event loop must not."""
    return await asyncio.to_thread(resolve_model_sync, model, tracking_uri)


async def resolve_version(model: ModelRef, tracking_uri: str | None) -> str:
    """The version number the spec names right now (an alias resolved)."""
    return (await resolve_model(model, tracking_uri)).version
