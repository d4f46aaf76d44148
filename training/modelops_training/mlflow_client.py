"""Where MLflow lives and how to talk to it without hanging.

The tracking URI comes from the caller, then ``MLFLOW_TRACKING_URI``, then an embedded store
under the repository's ignored ``.data/`` folder (or ``MODELOPS_DATA_DIR``), so a fresh clone
works offline. Calls to a remote server go through bounded retries with backoff: MLflow's own
HTTP retries default to minutes, and an operator must get a clear error in seconds instead.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import RegistryUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

# MLflow's REST client retries 7 times with backoff factor 2 by default (minutes when the
# server is down); we keep its retries short and do our own bounded loop on top.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # library callers (the operator) log, not draw
}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries, sleeping initial*factor**n (capped)."""

    attempts: int = 4
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 4.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(attempts=max(1, int(os.environ.get("MODELOPS_MLFLOW_RETRIES", cls.attempts))))

    def delays(self):
        delay = self.initial_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.factor


def repo_root() -> Path | None:
    """The checkout this package runs from (editable installs), or None when installed elsewhere."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "training" / "pyproject.toml").is_file() and (parent / "Makefile").is_file():
            return parent
    return None


def data_dir() -> Path:
    """``MODELOPS_DATA_DIR``, else ``<repo>/.data``, else ``./.data``."""
    if env := os.environ.get("MODELOPS_DATA_DIR"):
        return Path(env).expanduser().resolve()
    root = repo_root()
    return (root if root else Path.cwd()) / ".data"


def default_tracking_uri() -> str:
    db = data_dir() / "mlflow" / "mlflow.db"
    return f"sqlite:///{db}"


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The caller's URI, then ``MLFLOW_TRACKING_URI``, then the embedded default."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def local_db_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store, else None."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///") :])
    return None


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifacts of an embedded sqlite store live next to its database, never in ``./mlruns``."""
    db = local_db_path(tracking_uri)
    return (db.parent / "artifacts").resolve().as_uri() if db else None


def bound_http_retries() -> None:
    """Cap MLflow's internal HTTP retries (and its download bars) unless the user set them."""
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean 'MLflow is unreachable', as opposed to 'MLflow said no'."""
    import requests

    if isinstance(
        exc,
        (
            ConnectionError,
            TimeoutError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            urllib.error.URLError,
        ),
    ):
        return True
    text = str(exc)
    markers = (
        "Max retries exceeded",
        "Connection refused",
        "Failed to establish a new connection",
        "API request to",
        "Read timed out",
        "database is locked",
        "unable to open database",
    )
    return any(m in text for m in markers) and "RESOURCE_DOES_NOT_EXIST" not in text


def call_with_retries(fn: Callable[[], T], *, what: str, tracking_uri: str, policy: RetryPolicy | None = None) -> T:
    """Run ``fn``, retrying only on unavailability; raise RegistryUnavailableError at the end."""
    policy = policy or RetryPolicy.from_env()
    delays = list(policy.delays())
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_unavailable(exc):
                raise
            if attempt == len(delays):
                raise RegistryUnavailableError(
                    f"MLflow at {redact(tracking_uri)} is unreachable while trying to {what} "
                    f"({policy.attempts} attempts): {first_line(exc)}. Check that the tracking server "
                    f"is running and MLFLOW_TRACKING_URI is right, then retry."
                ) from exc
            log.warning("MLflow unreachable (%s), retrying in %.1fs", first_line(exc), delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def check_reachable(tracking_uri: str, policy: RetryPolicy | None = None) -> None:
    """Fail fast with RegistryUnavailableError when the tracking server does not answer /health."""
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"

        def probe() -> None:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - user-given URI
                if resp.status != 200:
                    raise ConnectionError(f"/health answered {resp.status}")

        call_with_retries(probe, what="reach /health", tracking_uri=tracking_uri, policy=policy)
    elif db := local_db_path(tracking_uri):
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailableError(
                f"cannot create the MLflow store folder {db.parent}: {exc}. "
                f"Set MLFLOW_TRACKING_URI or MODELOPS_DATA_DIR to a writable place."
            ) from exc


def client(tracking_uri: str):
    """An MlflowClient bound to one URI, leaving MLflow's process-wide state alone."""
    from mlflow import MlflowClient

    bound_http_retries()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def fluent_tracking_uri(tracking_uri: str | None = None) -> Iterator[str]:
    """MLflow's fluent API (runs, log_model) pointed at the resolved URI for the block; yields it.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` are process-wide and export
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` too: both are put back on exit, so a long-lived
    caller (a test session, a notebook) never carries this URI into its next call.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    bound_http_retries()
    check_reachable(uri)
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None unsets it
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Get or create an experiment; on embedded stores its artifacts go next to the database."""
    mc = client(tracking_uri)

    def get_or_create() -> str:
        exp = mc.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        root = artifact_root_for(tracking_uri)
        location = f"{root}/{name}" if root else None
        return mc.create_experiment(name, artifact_location=location)

    return call_with_retries(get_or_create, what=f"open experiment {name!r}", tracking_uri=tracking_uri)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def redact(uri: str) -> str:
    """Hide credentials embedded in a URI before putting it in a message."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        if "@" in rest.split("/", 1)[0]:
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
