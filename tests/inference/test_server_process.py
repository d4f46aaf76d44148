"""The real `modelops-serve` process on real ONNX models, over loopback HTTP: serving, JSON logs,
not-ready on a bad model, batching under concurrency, and graceful shutdown on SIGTERM. (Its gRPC
listener: test_grpc_process.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelops_inference.config import parse_args

from ..support import free_port
from . import models, references
from .conftest import v2_body

SERVE = str(Path(sys.executable).parent / "modelops-serve")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    grpc_target: str = ""

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_ready(self, timeout: float = 60) -> httpx.Response:
        """Polls readiness until 200, or until loading failed (the body says why)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(self.url + "/v2/health/ready", timeout=5)
                if response.status_code == 200 or "failed" in response.json().get("reason", ""):
                    return response
            time.sleep(0.1)
        raise TimeoutError(f"server not ready: {self.log.read_text()}")


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, env: dict | None = None):
    port, grpc_port = free_port(), free_port()
    log = tmp_path / f"server-{port}.log"
    environment = {**os.environ, "MODELOPS_PORT": str(port), "MODELOPS_GRPC_PORT": str(grpc_port),
                   "MODELOPS_HOST": "127.0.0.1", **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen([SERVE, *args], stdout=out, stderr=subprocess.STDOUT, env=environment)
    server = Server(process, f"http://127.0.0.1:{port}", log, f"127.0.0.1:{environment['MODELOPS_GRPC_PORT']}")
    try:
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def outputs(response: httpx.Response) -> np.ndarray:
    [out] = response.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_help_documents_every_flag_and_its_environment_variable():
    text = subprocess.run([SERVE, "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--model-uri", "--model-sha256", "--max-batch-size", "--max-batch-delay-ms", "--batching",
                 "--intra-op-threads", "--max-body-bytes", "--port", "--drain-seconds", "--model-dir",
                 "--max-queue-depth"):
        assert flag in text
    assert "MODELOPS_MODEL_URI" in text and "MLFLOW_TRACKING_URI" in text


def test_serves_a_real_model_over_http_with_env_configuration(tmp_path, mlp_path, mlp_sha256):
    env = {"MODELOPS_MODEL_URI": str(mlp_path), "MODELOPS_MODEL_NAME": "breast-cancer",
           "MODELOPS_MODEL_VERSION": "2", "MODELOPS_MODEL_SHA256": mlp_sha256}
    with serve(tmp_path, env=env) as server:
        assert server.wait_ready().json() == {"ready": True}
        rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
        response = httpx.post(server.url + "/v2/models/breast-cancer/versions/2/infer", json=v2_body(rows, "r1"))
        assert response.status_code == 200 and response.json()["id"] == "r1"
        models.assert_mlp_answers(outputs(response), rows)
        v1 = httpx.post(server.url + "/v1/models/breast-cancer:predict", json={"instances": rows.tolist()})
        models.assert_mlp_answers(v1.json()["predictions"], rows)
        bad = httpx.post(server.url + "/v2/models/breast-cancer/infer", content=b"{nope")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
        assert "modelops_inference_requests_total" in httpx.get(server.url + "/metrics").text
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
    lines = server.log_lines()
    assert any(line.get("event") == "model_ready" and line["sha256"] == mlp_sha256 for line in lines)
    [error] = [line for line in lines if line.get("event") == "request_error"]
    assert error["level"] == "WARNING" and error["status"] == 400
    assert "nope" not in json.dumps(lines)  # payloads are never logged


def test_a_bad_sha256_keeps_the_process_live_but_not_ready_with_a_json_error_line(tmp_path, mlp_path):
    with serve(tmp_path, "--model-uri", str(mlp_path), "--model-sha256", "a" * 64) as server:
        ready = server.wait_ready()
        assert ready.status_code == 400
        assert "sha256 mismatch" in ready.json()["reason"]
        assert httpx.get(server.url + "/v2/health/live").status_code == 200
        time.sleep(0.2)
        assert server.process.poll() is None
    [line] = [x for x in server.log_lines() if x["level"] == "ERROR"]
    assert line["event"] == "model_load_failed" and "sha256 mismatch" in line["error"]


def test_debug_level_logs_one_line_per_request_without_payloads(tmp_path, mlp_path):
    with serve(tmp_path, "--model-uri", str(mlp_path), "--log-level", "debug") as server:
        server.wait_ready()
        httpx.post(server.url + "/v2/models/mlp/infer", json=v2_body(np.full((1, 4), 0.123456, np.float32)))
    lines = [x for x in server.log_lines() if x.get("event") == "request" and x["endpoint"] == "infer"]
    assert len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["duration_ms"] > 0
    assert "0.123456" not in server.log.read_text()


async def _concurrent_infer(url: str, payloads: list[np.ndarray], concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.post(url, json=v2_body(p, str(i))) for i, p in enumerate(payloads)))


def test_batching_returns_each_caller_its_own_rows_under_concurrency(tmp_path, mlp_path):
    rng = np.random.default_rng(7)
    payloads = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(256)]
    args = ("--model-uri", str(mlp_path), "--max-batch-size", "32", "--max-batch-delay-ms", "20")
    with serve(tmp_path, *args) as server:
        server.wait_ready()
        responses = asyncio.run(_concurrent_infer(server.url + "/v2/models/mlp/infer", payloads, 64))
        for i, (rows, response) in enumerate(zip(payloads, responses, strict=True)):
            assert response.status_code == 200 and response.json()["id"] == str(i)
            models.assert_mlp_answers(outputs(response), rows)
        metrics = httpx.get(server.url + "/metrics").text
    runs = _sample(metrics, "modelops_inference_batch_requests_count")
    assert _sample(metrics, "modelops_inference_batch_requests_sum") == len(payloads)
    assert runs < len(payloads), "concurrent requests were never merged"
    assert _sample(metrics, 'modelops_inference_batch_rows_bucket{le="32.0"') == runs


def test_drift_counters_equal_numpy_counts_of_the_rows_sent(tmp_path, mlp_path):
    """The exporter's layout (reference.json beside model.onnx), concurrent requests merged into batches:
    every feature's bin counters are numpy's counts of the rows sent, by the reference's own edges."""
    (tmp_path / "export").mkdir()
    model = tmp_path / "export" / "model.onnx"
    model.write_bytes(mlp_path.read_bytes())
    training = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    reference = references.write(tmp_path / "export" / "reference.json", references.profile(training))
    rng = np.random.default_rng(2)
    payloads = [(rng.normal(size=(int(rng.integers(1, 4)), 4)) * 2 + 0.5).astype(np.float32) for _ in range(128)]
    with serve(tmp_path, "--model-uri", str(model), "--max-batch-delay-ms", "20") as server:
        server.wait_ready()
        responses = asyncio.run(_concurrent_infer(server.url + "/v2/models/model/infer", payloads, 32))
        assert {r.status_code for r in responses} == {200}
        metrics = httpx.get(server.url + "/metrics").text
    assert _sample(metrics, "modelops_inference_batch_requests_count") < len(payloads)  # batched runs
    sent = np.concatenate(payloads).astype(np.float64)
    for j, feature in enumerate(json.loads(reference.read_text())["features"]):
        counts = np.bincount(np.searchsorted(feature["edges"], sent[:, j], side="right"),
                             minlength=len(feature["counts"]))
        for b, count in enumerate(counts):
            series = (f'modelops_inference_feature_bin_total{{bin="{b}",feature="{feature["name"]}",'
                      'model_name="model",model_version=""}')
            assert _sample(metrics, series) == count, series
    assert any(line.get("event") == "drift_on" for line in server.log_lines())


def test_a_dynamically_quantized_model_answers_each_request_as_if_it_came_alone(tmp_path):
    """DynamicQuantizeLinear scales the whole input tensor at once: in a shared batch, one client's rows
    would change another's answer. The server detects such a graph and runs each request on its own."""
    path = models.quantized_mlp(tmp_path / "int8.onnx")
    alone = np.array([[0.1, -0.2, 0.3, 0.05]], np.float32)
    loud = np.full((3, 4), 250.0, np.float32)  # another client's rows, far outside `alone`'s range
    args = ("--model-uri", str(path), "--model-name", "mlp", "--max-batch-size", "32", "--max-batch-delay-ms", "20")
    with serve(tmp_path, *args) as server:
        server.wait_ready()
        url = server.url + "/v2/models/mlp/infer"
        expected = httpx.post(url, json=v2_body(alone)).json()["outputs"][0]["data"]
        responses = asyncio.run(_concurrent_infer(url, [alone, loud] * 16, 32))
    answers = [r.json()["outputs"][0]["data"] for r in responses[::2]]
    assert all(a == expected for a in answers), f"{expected} alone, but in company: {answers[:3]}"
    why = [x for x in server.log_lines() if x.get("event") == "batching_unsupported"]
    assert why and "DynamicQuantizeLinear" in json.dumps(why[0]), server.log_lines()


def _sample(text: str, prefix: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


async def _load_until_unready(url: str, clients: int) -> tuple[list, list, float]:
    """Clients send requests back to back until readiness fails (as a Kubernetes endpoint controller
    would then stop routing to the pod); returns (results, errors, time readiness failed)."""
    stop = asyncio.Event()
    results, errors = [], []
    unready_at = 0.0

    async def client_loop(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            rows = np.full((1, 4), n * 1000 + i, np.float32)
            try:
                response = await client.post(url + "/v2/models/mlp/infer", json=v2_body(rows))
                results.append((time.monotonic(), rows, response.status_code, outputs(response)))
            except Exception as e:  # noqa: BLE001 - any failure is a lost request
                errors.append(repr(e))
            i += 1

    async def watch(client: httpx.AsyncClient) -> None:
        nonlocal unready_at
        while (await client.get(url + "/v2/health/ready")).status_code == 200:
            await asyncio.sleep(0.02)
        unready_at = time.monotonic()
        stop.set()

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients + 1)) as client:
        await asyncio.gather(watch(client), *(client_loop(client, n) for n in range(clients)))
    return results, errors, unready_at


def test_sigterm_during_load_fails_readiness_first_and_loses_no_request(tmp_path, mlp_path):
    # the drain outlasts the time a busy client needs to see the 503 and stop sending
    with serve(tmp_path, "--model-uri", str(mlp_path), "--drain-seconds", "5") as server:
        server.wait_ready()

        async def scenario():
            load = asyncio.create_task(_load_until_unready(server.url, 16))
            await asyncio.sleep(1.0)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            return signalled, await load

        signalled, (results, errors, unready_at) = asyncio.run(scenario())
        assert server.process.wait(20) == 0
    assert errors == []
    assert len(results) > 50
    assert all(status == 200 for _, _, status, _ in results)
    for _, rows, _, out in results:
        models.assert_mlp_answers(out, rows)
    assert signalled <= unready_at
    assert any(t > signalled for t, *_ in results), "no request was in flight when SIGTERM came"


def test_in_flight_requests_finish_after_sigterm(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    payloads = models.slow_payloads()
    with serve(tmp_path, "--model-uri", str(slow), "--model-name", "mlp", "--batching", "false") as server:
        server.wait_ready()

        async def scenario():
            sending = asyncio.create_task(_concurrent_infer(server.url + "/v2/models/mlp/infer", payloads, 8))
            async with httpx.AsyncClient() as client:
                in_flight = 0.0
                while in_flight < 4 and not sending.done():
                    metrics = (await client.get(server.url + "/metrics")).text
                    in_flight = _sample(metrics, "modelops_inference_requests_in_flight{")
            assert not sending.done(), "the requests finished before any was seen in flight"
            server.process.send_signal(signal.SIGTERM)
            return in_flight, await sending

        in_flight, responses = asyncio.run(scenario())
        assert server.process.wait(30) == 0
    assert in_flight >= 4
    for rows, response in zip(payloads, responses, strict=True):
        assert response.status_code == 200
        np.testing.assert_allclose(outputs(response), rows)
    events = [x.get("event") for x in server.log_lines()]
    assert "draining" in events


def _open_after(sock, seconds: float) -> bool:
    """Whether the server still holds the idle connection `seconds` after the last response: one more
    request on it is answered (a closed connection reads EOF instead)."""
    time.sleep(seconds)
    try:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        return sock.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_an_idle_keep_alive_connection_outlives_uvicorns_5s_and_closes_after_the_configured_time(tmp_path,
                                                                                                  mlp_path):
    """Ingress controllers keep upstream connections idle for 60 s; a server closing them sooner races
    the next request on them, which the client sees as a 502."""
    with serve(tmp_path, "--model-uri", str(mlp_path), "--keep-alive-seconds", "7") as server:
        server.wait_ready()
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            assert _open_after(sock, 0), "the first request on the connection was not answered"
            assert _open_after(sock, 6), "the server closed an idle connection before --keep-alive-seconds"
            assert not _open_after(sock, 9), "the server kept an idle connection past --keep-alive-seconds"


def test_the_keep_alive_default_outlasts_ingress_upstream_keep_alive():
    config = parse_args(["--model-uri", "m.onnx"])
    assert config.keep_alive_seconds == 75
    with pytest.raises(SystemExit):
        parse_args(["--model-uri", "m.onnx", "--keep-alive-seconds", "0"])
