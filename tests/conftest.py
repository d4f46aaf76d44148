"""Fixtures shared by every component's tests.

``mlflow_server``: a real ``mlflow server`` process (sqlite store, ``--serve-artifacts``) on a
free local port, started once per session. ``tracking``: point MLflow (env and fluent API) at a
URI for the duration of a ``with`` block, restoring what was there before. Under ``make test``
a skip is a failure (see ``pytest_runtest_makereport``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import support

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


def tracking(uri: str):
    """Use ``uri`` as MLflow's tracking and registry URI inside the block (env + fluent API)."""
    from modelops_training.mlflow_client import fluent_tracking_uri

    return fluent_tracking_uri(uri)


@pytest.fixture
def use_tracking():
    """``with use_tracking(uri): ...`` inside a test; a function-scoped handle on ``tracking``."""
    return tracking


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real MLflow tracking server serving artifacts; yields its base URL (http://127.0.0.1:PORT)."""
    with support.mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server.url
