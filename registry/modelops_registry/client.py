"""The MLflow client every component uses, and resolving a version or alias to one concrete version.

MLflow reads its HTTP retry and timeout settings from ``MLFLOW_HTTP_REQUEST_*`` environment
variables at each request and offers no per-client setting, so there is one set of values
(``HTTP_SETTINGS``) and one function that applies them (``apply_http_settings``), called by
``client()`` and ``download_artifacts()`` rather than at import: whichever module imports first no
longer decides. Values the user set in the environment win. On top, ``call_with_retries`` runs a
short bounded loop so that an unreachable registry becomes ``RegistryUnavailable`` in seconds.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .errors import ModelVersionNotFound, RegistryAnswer, RegistryUnavailable, is_not_found
from .redact import redact_text, redact_uri
from .uri import ModelRef

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")

# MLflow retries 7 times with backoff factor 2 and waits 120 s per request by default: minutes
# before an operator could report a registry that is down. Its own retries stay short (2, factor 1),
# our loop adds a few more; 15 s per request is long enough for a slow artifact upload to answer and
# short enough that one reconcile of the operator stays under a minute when MLflow hangs.
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # library callers log, they do not draw bars
}

_UNAVAILABLE_MARKERS = (
    "Max retries exceeded",
    "Connection refused",
    "Failed to establish a new connection",
    "API request to",
    "Read timed out",
    "database is locked",
    "unable to open database",
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries, sleeping initial*factor**n (capped)."""

    attempts: int = 4
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 4.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """``MODELOPS_MLFLOW_RETRIES`` attempts (default 4): tests and impatient callers lower it."""
        return cls(attempts=max(1, int(os.environ.get("MODELOPS_MLFLOW_RETRIES", cls.attempts))))

    def delays(self) -> Iterator[float]:
        delay = self.initial_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.factor


@dataclass(frozen=True)
class ResolvedVersion:
    """The registry version a version or alias points at right now; everything downstream uses it."""

    name: str
    version: str
    run_id: str | None
    source: str  # where the model's files live, e.g. models:/m-<id> or runs:/<run>/model
    alias: str | None = None  # the alias it was resolved through, if any

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``: what to hand on so nobody resolves the alias again."""
        return f"models:/{self.name}/{self.version}"


def apply_http_settings() -> None:
    """Put ``HTTP_SETTINGS`` into the environment MLflow reads, unless the user set them."""
    for key, value in HTTP_SETTINGS.items():
        os.environ.setdefault(key, value)


def client(tracking_uri: str | None) -> MlflowClient:
    """An MlflowClient for one URI (tracking and registry alike), leaving MLflow's global URIs alone."""
    from mlflow import MlflowClient

    apply_http_settings()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def download_artifacts(artifact_uri: str, dst: str, *, tracking_uri: str | None = None) -> str:
    """Download ``runs:/``, ``models:/`` or a store URI into ``dst`` with the project's HTTP settings."""
    import mlflow.artifacts

    apply_http_settings()
    return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst, tracking_uri=tracking_uri)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "MLflow is unreachable", as opposed to "MLflow said no"."""
    import httpx
    import requests

    reachability = (
        ConnectionError,
        TimeoutError,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        urllib.error.URLError,
        httpx.TransportError,
    )
    if isinstance(exc, reachability):
        return True
    text = str(exc)
    return any(m in text for m in _UNAVAILABLE_MARKERS) and "RESOURCE_DOES_NOT_EXIST" not in text


def first_line(exc: BaseException) -> str:
    """The first line of an error for a message, credentials redacted before it is cut."""
    text = redact_text(str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def where(tracking_uri: str | None) -> str:
    """The tracking URI for a message, credentials hidden."""
    return redact_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "the default MLflow tracking URI")


def call_with_retries(
    fn: Callable[[], T], *, what: str, tracking_uri: str | None, policy: RetryPolicy | None = None
) -> T:
    """Run ``fn``, retrying only on unavailability; raise RegistryUnavailable when the tries run out."""
    policy = policy or RetryPolicy.from_env()
    delays = list(policy.delays())
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_unavailable(exc):
                raise
            if attempt == len(delays):
                raise RegistryUnavailable(
                    f"MLflow at {where(tracking_uri)} is unreachable while trying to {what} "
                    f"({policy.attempts} attempts): {first_line(exc)}. Check that the tracking server "
                    f"is running and MLFLOW_TRACKING_URI is right, then retry."
                ) from exc
            log.warning("MLflow unreachable (%s), retrying in %.1fs", first_line(exc), delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def check_reachable(tracking_uri: str, policy: RetryPolicy | None = None) -> None:
    """Fail fast with RegistryUnavailable when an HTTP tracking server does not answer ``/health``."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"

    def probe() -> None:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - user-given URI
            if resp.status != 200:
                raise ConnectionError(f"/health answered {resp.status}")

    call_with_retries(probe, what="reach /health", tracking_uri=tracking_uri, policy=policy)


def resolve(tracking_uri: str | None, model: str | ModelRef, *, policy: RetryPolicy | None = None) -> ResolvedVersion:
    """Resolve ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a ModelRef to one concrete version.

    Raises InvalidModelUri for unreadable text, ModelVersionNotFound (naming the versions and
    aliases that do exist) or RegistryUnavailable; any other MLflow refusal propagates as is.
    """
    from .reader import reader

    ref = ModelRef.parse(model) if isinstance(model, str) else model
    rd = reader(tracking_uri)

    def lookup():
        try:
            if ref.alias:
                return rd.get_model_version_by_alias(ref.name, ref.alias)
            return rd.get_model_version(ref.name, ref.version)
        except RegistryAnswer as exc:
            if is_not_found(exc, lookup=True):
                return None
            raise

    mv = call_with_retries(lookup, what=f"look up {ref.uri}", tracking_uri=tracking_uri, policy=policy)
    if mv is None:
        raise ModelVersionNotFound(_not_found_message(ref, rd, tracking_uri))
    return ResolvedVersion(ref.name, str(mv.version), mv.run_id or None, mv.source, ref.alias)


def _not_found_message(ref: ModelRef, rd, tracking_uri: str | None) -> str:
    """Say what exists instead, so the fix is obvious from the message alone."""
    place = where(tracking_uri)
    try:
        model = rd.get_registered_model(ref.name)
    except RegistryAnswer:
        try:
            names = sorted(m.name for m in rd.search_registered_models(max_results=20))
            known = f"registered models: {', '.join(names)}" if names else "the registry is empty"
        except RegistryAnswer:
            known = "the registry could not list its models"
        return (
            f"registered model {ref.name!r} not found in {place} ({known}); fix the name or "
            f"train and register one with `modelops-train --dataset ... --register {ref.name}`"
        )
    versions = sorted((int(v.version) for v in rd.search_model_versions(f"name='{ref.name}'")), reverse=True)
    aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(model.aliases.items())) or "none"
    return (
        f"{ref.describe()} of model {ref.name!r} not found in {place} (versions: "
        f"{', '.join(map(str, versions[:20])) or 'none'}; aliases: {aliases}); "
        f"use an existing version or alias, or set the alias first"
    )
