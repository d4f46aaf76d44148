"""Where MLflow lives and how to talk to it without hanging.

The tracking URI comes from the caller, then ``MLFLOW_TRACKING_URI``, then an embedded store
under the repository's ignored ``.data/`` folder (or ``MODELOPS_DATA_DIR``), so a fresh clone
works offline. The client, its HTTP settings and the bounded retries are modelops_registry's (one
set for every component); this module adds the embedded store and MLflow's fluent API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from modelops_registry import client as registry
from modelops_registry.client import RetryPolicy, apply_http_settings, client, first_line, is_unavailable

from .errors import RegistryUnavailableError, registry_errors

T = TypeVar("T")
__all__ = ["RetryPolicy", "client", "first_line", "is_unavailable"]  # re-exported for this package


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


def call_with_retries(fn: Callable[[], T], *, what: str, tracking_uri: str, policy: RetryPolicy | None = None) -> T:
    """modelops_registry's bounded retries, failing with this package's RegistryUnavailableError."""
    with registry_errors():
        return registry.call_with_retries(fn, what=what, tracking_uri=tracking_uri, policy=policy)


def check_reachable(tracking_uri: str, policy: RetryPolicy | None = None) -> None:
    """Fail fast with RegistryUnavailableError when the tracking server does not answer /health, or
    when an embedded store's folder cannot be created."""
    if db := local_db_path(tracking_uri):
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailableError(
                f"cannot create the MLflow store folder {db.parent}: {exc}. "
                f"Set MLFLOW_TRACKING_URI or MODELOPS_DATA_DIR to a writable place."
            ) from exc
        return
    with registry_errors():
        registry.check_reachable(tracking_uri, policy)


@contextmanager
def fluent_tracking_uri(tracking_uri: str | None = None) -> Iterator[str]:
    """MLflow's fluent API (runs, log_model) pointed at the resolved URI for the block; yields it.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` are process-wide and export
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` too: both are put back on exit, so a long-lived
    caller (a test session, a notebook) never carries this URI into its next call.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    apply_http_settings()
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
