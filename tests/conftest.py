"""Fixtures shared by every component's tests.

``mlflow_server``: a real ``mlflow server`` process (sqlite store, ``--serve-artifacts``) on a
free local port, started once per session. ``tracking``: point MLflow (env and fluent API) at a
URI for the duration of a ``with`` block, restoring what was there before. Under ``make test``
a skip is a failure (see ``pytest_runtest_makereport``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .support import free_port  # also imported from here by the component suites

NO_SKIP = os.environ.get("MODELOPS_NO_SKIP") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under `make test` (MODELOPS_NO_SKIP=1), which installs every tool and starts the cluster, a
    skipped test is a failure: a missing prerequisite must not pass CI silently."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under make test, where nothing may be skipped: {report.longrepr}"


@contextlib.contextmanager
def tracking(uri: str):
    """Use ``uri`` as MLflow's tracking and registry URI inside the block (env + fluent API)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    previous_registry = getattr(registry_utils, "_registry_uri", None)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)


@pytest.fixture
def use_tracking():
    """``with use_tracking(uri): ...`` inside a test; a function-scoped handle on ``tracking``."""
    return tracking


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server serving artifacts; yields its base URL (http://127.0.0.1:PORT)."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp / "mlflow-server.log"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(mlflow_bin),
                "server",
                "--backend-store-uri",
                f"sqlite:///{tmp}/mlflow.db",
                "--serve-artifacts",
                "--artifacts-destination",
                str(tmp / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after 180s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
