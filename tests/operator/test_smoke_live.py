"""Smoke checks against a real modelops-serve process serving a real export: the contract between
the exporter's record, the inference server and the operator, without a cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from modelops_operator.smoke import cases_from_export, run_smoke
from modelops_operator.spec import SmokeSpec
from modelops_registry import ExportRecord

from ..support import free_port, wait_until


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[str, ExportRecord, ExportRecord]:
    from modelops_training.export import export_model
    from modelops_training.train import TrainConfig, train

    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    records = {}
    for label, sabotage in (("good", None), ("nan", "nan")):
        result = train(TrainConfig(dataset="breast_cancer", epochs=2, register="smoke-live", sabotage=sabotage,
                                   progress=False, tracking_uri=tracking_uri))
        records[label] = export_model(result.registered_uri, tracking_uri=tracking_uri)
    return tracking_uri, records["good"], records["nan"]


@contextmanager
def serving(record: ExportRecord, tracking_uri: str, tmp: Path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "modelops-serve"), "--model-uri", record.onnx_uri,
         "--model-name", "smoke", "--model-version", record.version, "--model-sha256", record.sha256,
         "--model-dir", str(tmp), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, "modelops-serve exited"
        try:
            return httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until("modelops-serve ready", ready, timeout=90)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_smoke_checks_pass_on_a_good_export_served_for_real(exports, tmp_path):
    tracking_uri, good, _ = exports
    cases = cases_from_export(good)
    assert len(cases) >= 2
    with serving(good, tracking_uri, tmp_path) as base:
        result = asyncio.run(run_smoke(base, "smoke", cases, SmokeSpec(), version=good.version))
    assert result.ok(1.0), result.summary()


def test_smoke_checks_catch_a_model_that_answers_nan(exports, tmp_path):
    tracking_uri, _, broken = exports
    with serving(broken, tracking_uri, tmp_path) as base:
        cases = cases_from_export(broken)
        result = asyncio.run(run_smoke(base, "smoke", cases, SmokeSpec(), version=broken.version))
    assert result.passed == 0 and "not finite" in result.failures[0]


def test_a_wrong_model_name_is_a_failed_check_not_a_crash(exports, tmp_path):
    tracking_uri, good, _ = exports
    with serving(good, tracking_uri, tmp_path) as base:
        result = asyncio.run(run_smoke(base, "other", cases_from_export(good), SmokeSpec(), version=good.version))
    assert result.passed == 0 and "HTTP 404" in result.failures[0]


def test_answers_from_another_version_are_retried_then_reported(exports, tmp_path):
    """Right after a rollout an old pod may still answer: that is no evidence for the new version."""
    tracking_uri, good, _ = exports
    with serving(good, tracking_uri, tmp_path) as base:
        result = asyncio.run(run_smoke(base, "smoke", cases_from_export(good)[:1], SmokeSpec(),
                                       version="not-" + good.version, settle_seconds=1.0, retry_interval=0.2))
    assert result.passed == 0
    assert f"answered by version {good.version}" in result.failures[0]
