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


async def forward_later(delay: float, port: int, upstream: int) -> asyncio.AbstractServer:
    """Listen on `port` only after `delay` (a Service kube-proxy has not programmed yet refuses), then
    forward every connection to `upstream`."""
    await asyncio.sleep(delay)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", port)


def test_a_service_that_refuses_connections_at_first_is_retried_not_failed(exports, tmp_path):
    """Right after pods turn ready, kube-proxy may not route the Service yet: a refused connection is
    no answer from the version (a wrong answer still fails at once)."""
    tracking_uri, good, _ = exports
    with serving(good, tracking_uri, tmp_path) as base:
        port = free_port()

        async def check():
            late = asyncio.create_task(forward_later(2.0, port, int(base.rsplit(":", 1)[1])))
            try:
                return await run_smoke(f"http://127.0.0.1:{port}", "smoke", cases_from_export(good), SmokeSpec(),
                                       version=good.version, settle_seconds=15, retry_interval=0.2)
            finally:
                (await late).close()

        result = asyncio.run(check())
    assert result.ok(1.0), result.summary()


def test_a_service_that_never_accepts_fails_after_the_settle_window(exports):
    _, good, _ = exports
    result = asyncio.run(run_smoke(f"http://127.0.0.1:{free_port()}", "smoke", cases_from_export(good)[:1],
                                   SmokeSpec(), version=good.version, settle_seconds=1.0, retry_interval=0.2))
    assert result.passed == 0 and "ConnectError" in result.failures[0]
