"""The real `modelops-serve` process over loopback gRPC with tritonclient's gRPC client, unchanged: health,
metadata and inference on an FP32 MLP, an INT64 model and a model of every v2 datatype; configuration;
readiness while draining; and SIGTERM with gRPC requests in flight."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from ..support import wait_until
from . import models
from .test_server_process import SERVE, _sample, serve, v2_body


def ready_client(server) -> triton.InferenceServerClient:
    server.wait_ready()
    return triton.InferenceServerClient(server.grpc_target)


def fp32_input(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=5).status


def test_help_documents_the_grpc_flags():
    text = subprocess.run([SERVE, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--grpc " in text and "--grpc-port" in text and "MODELOPS_GRPC_PORT" in text


def test_tritonclient_talks_to_the_mlp_unchanged(tmp_path, mlp_path, mlp_sha256):
    env = {"MODELOPS_MODEL_URI": str(mlp_path), "MODELOPS_MODEL_NAME": "breast-cancer",
           "MODELOPS_MODEL_VERSION": "2", "MODELOPS_MODEL_SHA256": mlp_sha256}
    with serve(tmp_path, env=env) as server:
        client = ready_client(server)
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("breast-cancer") and client.is_model_ready("breast-cancer", "2")
        with pytest.raises(InferenceServerException, match="version '7' of model 'breast-cancer' not found"):
            client.is_model_ready("breast-cancer", "7")
        meta = client.get_server_metadata(as_json=True)
        assert meta["name"] == "modelops-inference" and meta["version"]
        model = client.get_model_metadata("breast-cancer", as_json=True)
        assert model == {"name": "breast-cancer", "versions": ["2"], "platform": "onnxruntime_onnx",
                         "inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}],
                         "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]}]}
        rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
        result = client.infer("breast-cancer", [fp32_input("input", rows)], model_version="2", request_id="r1",
                              outputs=[triton.InferRequestedOutput("probabilities")], parameters={"note": "x"})
        models.assert_mlp_answers(result.as_numpy("probabilities"), rows)
        assert result.get_response().id == "r1" and result.get_response().model_version == "2"

        with pytest.raises(InferenceServerException) as error:
            client.infer("breast-cancer", [fp32_input("input", np.zeros((2, 3), np.float32))])
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert error.value.message() == "input 'input'.shape: shape [-1, 4] expected (-1: any size), got [2, 3]"
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata("digits")
        assert error.value.status() == "StatusCode.NOT_FOUND"

        # the same process answers HTTP, and counts both protocols in one exposition
        http = httpx.post(server.url + "/v2/models/breast-cancer/infer", json={"inputs": [
            {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": rows.ravel().tolist()}]})
        assert http.status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert _sample(metrics, 'modelops_inference_requests_total{endpoint="infer",model_name="breast-cancer",'
                                'model_version="2",protocol="grpc",status_code="200"}') == 1
        assert _sample(metrics, 'modelops_inference_requests_total{endpoint="infer",model_name="breast-cancer",'
                                'model_version="2",protocol="grpc",status_code="400"}') == 1
        assert _sample(metrics, 'modelops_inference_requests_total{endpoint="infer",model_name="breast-cancer",'
                                'model_version="2",protocol="http",status_code="200"}') == 1
        client.close()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
    lines = server.log_lines()
    assert any(line.get("event") == "grpc_listening" for line in lines)
    [error_line] = [line for line in lines if line.get("event") == "request_error" and line["status"] == 400]
    assert (error_line["protocol"], error_line["grpc_code"], error_line["level"]) == (
        "grpc", "INVALID_ARGUMENT", "WARNING")


def test_every_datatype_round_trips_through_tritonclient(tmp_path, all_types_path):
    with serve(tmp_path, "--model-uri", str(all_types_path), "--model-name", "every") as server:
        client = ready_client(server)
        arrays = models.all_types_rows(3, seed=4)
        tensors = []
        for name, array in arrays.items():
            tensor = triton.InferInput(name, list(array.shape), name.upper())
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        result = client.infer("every", tensors)
        for name, sent in arrays.items():
            got = result.as_numpy(f"{name}_out")
            if sent.dtype == object:
                got = np.vectorize(bytes.decode, otypes=[object])(got)
            assert got.dtype == sent.dtype and got.tolist() == sent.tolist(), name
        metadata = client.get_model_metadata("every", as_json=True)
        assert [i["datatype"] for i in metadata["inputs"]] == list(models.V2_TO_ONNX)
        client.close()


def test_an_int64_model_and_an_input_onnxruntime_rejects(tmp_path, lookup_path):
    with serve(tmp_path, "--model-uri", str(lookup_path)) as server:
        client = ready_client(server)
        index = triton.InferInput("index", [3], "INT64")
        index.set_data_from_numpy(np.array([0, 4, 2], np.int64))
        result = client.infer("lookup", [index])
        assert result.as_numpy("value").tolist() == [[0, 1], [8, 9], [4, 5]]
        index.set_data_from_numpy(np.array([0, 99, 2], np.int64))
        with pytest.raises(InferenceServerException) as error:
            client.infer("lookup", [index])
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert error.value.message().startswith("the model could not run on this input")
        assert client.is_server_ready()  # only that request failed
        client.close()


def test_grpc_is_off_with_the_flag_and_a_busy_port_stops_the_process(tmp_path, mlp_path):
    with serve(tmp_path, "--model-uri", str(mlp_path), "--grpc", "false") as server:
        server.wait_ready()
        assert 'protocol="grpc"' not in httpx.get(server.url + "/metrics").text
        with grpc.insecure_channel(server.grpc_target) as channel:
            with pytest.raises(grpc.FutureTimeoutError):
                grpc.channel_ready_future(channel).result(timeout=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serve(tmp_path, "--model-uri", str(mlp_path), env={"MODELOPS_GRPC_PORT": str(port)}) as server:
            assert server.process.wait(30) == 1
    # grpc core, like onnxruntime, writes its own errors to stderr in its own format; ours is the JSON line
    lines = [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]
    [line] = [x for x in lines if x.get("event") == "grpc_listen_failed"]
    assert line["level"] == "ERROR" and f"127.0.0.1:{port}" in line["message"] and "--grpc-port" in line["message"]


def test_grpc_readiness_fails_at_sigterm_while_requests_are_still_served(tmp_path, mlp_path):
    with serve(tmp_path, "--model-uri", str(mlp_path), "--drain-seconds", "3") as server:
        client = ready_client(server)
        assert health(server.grpc_target) == health_pb2.HealthCheckResponse.SERVING
        server.process.send_signal(signal.SIGTERM)
        wait_until("gRPC readiness to fail", lambda: not client.is_server_ready(), timeout=5, interval=0.05)
        assert health(server.grpc_target) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(server.grpc_target, "liveness") == health_pb2.HealthCheckResponse.SERVING
        rows = np.ones((1, 4), np.float32)
        result = client.infer("mlp", [fp32_input("input", rows)])
        models.assert_mlp_answers(result.as_numpy("probabilities"), rows)
        client.close()
        assert server.process.wait(15) == 0


def test_in_flight_grpc_requests_finish_after_sigterm_and_new_ones_are_refused(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    payloads = models.slow_payloads()
    with serve(tmp_path, "--model-uri", str(slow), "--model-name", "mlp", "--batching", "false") as server:
        server.wait_ready()

        async def scenario():
            client = triton_aio.InferenceServerClient(server.grpc_target)
            sending = [asyncio.ensure_future(client.infer("mlp", [fp32_input("input", p)], client_timeout=60))
                       for p in payloads]
            async with httpx.AsyncClient() as http:
                in_flight = 0.0
                while in_flight < 4 and not any(s.done() for s in sending):
                    metrics = (await http.get(server.url + "/metrics")).text
                    in_flight = _sample(metrics, "modelops_inference_requests_in_flight{")
            assert not any(s.done() for s in sending), "a request finished before four were seen in flight"
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # the drain (0 s) is over and the listener has closed
            try:
                await client.infer("mlp", [fp32_input("input", payloads[0])], client_timeout=10)
                refused = "answered"
            except InferenceServerException as e:
                refused = e.status()
            results = await asyncio.gather(*sending)
            finished = time.monotonic()
            await client.close()
            return in_flight, refused, results, finished - signalled

        in_flight, refused, results, seconds = asyncio.run(scenario())
        assert server.process.wait(30) == 0
    assert in_flight >= 4
    assert refused == "StatusCode.UNAVAILABLE"
    for rows, result in zip(payloads, results, strict=True):
        np.testing.assert_allclose(result.as_numpy("output"), rows)
    assert seconds > 0.5, "the in-flight requests finished before new ones were refused"
    events = [json.loads(line).get("event") for line in server.log.read_text().splitlines() if line.strip()]
    assert "draining" in events


def test_a_full_server_refuses_grpc_at_once_and_http_and_grpc_share_the_one_limit(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    args = ("--model-uri", str(slow), "--model-name", "mlp", "--batching", "false", "--max-queue-depth", "2")
    rows = np.ones((256, 4), np.float32)
    path = "/v2/models/mlp/infer"
    with serve(tmp_path, *args) as server:
        server.wait_ready()

        async def scenario():
            client = triton_aio.InferenceServerClient(server.grpc_target)
            async with httpx.AsyncClient(timeout=60) as http:

                async def filled_by(requests) -> list[asyncio.Future]:
                    sending = [asyncio.ensure_future(r) for r in requests]
                    while _sample((await http.get(server.url + "/metrics")).text,
                                  "modelops_inference_queue_depth{") < 2:
                        await asyncio.sleep(0.01)
                    return sending

                # two HTTP requests fill the server: a gRPC one is refused while they are still running
                sending = await filled_by(http.post(server.url + path, json=v2_body(rows)) for _ in range(2))
                try:
                    await client.infer("mlp", [fp32_input("input", rows)], client_timeout=30)
                    grpc_refused = None
                except InferenceServerException as e:
                    grpc_refused = (e.status(), e.message(), any(s.done() for s in sending))
                over_http = await asyncio.gather(*sending)
                # two gRPC requests fill it: an HTTP one is refused while they are still running
                sending = await filled_by(client.infer("mlp", [fp32_input("input", rows)], client_timeout=60)
                                          for _ in range(2))
                refused = await http.post(server.url + path, json=v2_body(rows))
                http_refused = (refused.status_code, refused.headers.get("retry-after"), any(s.done() for s in sending))
                over_grpc = await asyncio.gather(*sending)
                metrics = (await http.get(server.url + "/metrics")).text
            await client.close()
            return grpc_refused, over_http, http_refused, over_grpc, metrics

        grpc_refused, over_http, http_refused, over_grpc, metrics = asyncio.run(scenario())
    assert grpc_refused == ("StatusCode.UNAVAILABLE", "server is at capacity (2 inference requests in progress, "
                            "--max-queue-depth); retry after 1 s", False)
    assert http_refused == (503, "1", False)
    assert [r.status_code for r in over_http] == [200, 200]
    for result in over_grpc:
        np.testing.assert_allclose(result.as_numpy("output"), rows)
    assert _sample(metrics, "modelops_inference_requests_rejected_total{") == 2
    assert _sample(metrics, "modelops_inference_queue_depth{") == 0
    assert _sample(metrics, 'modelops_inference_requests_total{endpoint="infer",model_name="mlp",model_version="",'
                            'protocol="grpc",status_code="503"}') == 1
    overloaded = [line for line in server.log_lines() if line.get("event") == "overloaded"]
    assert len(overloaded) == 1  # logged once for both refusals, whichever protocol


def test_a_second_sigterm_cuts_in_flight_grpc_calls_short(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    with serve(tmp_path, "--model-uri", str(slow), "--model-name", "mlp", "--batching", "false") as server:
        server.wait_ready()

        async def scenario():
            client = triton_aio.InferenceServerClient(server.grpc_target)
            rows = np.ones((256, 4), np.float32)
            sending = [asyncio.ensure_future(client.infer("mlp", [fp32_input("input", rows)], client_timeout=60))
                       for _ in range(20)]
            await asyncio.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            results = await asyncio.gather(*sending, return_exceptions=True)
            await client.close()
            return results, time.monotonic() - started

        results, seconds = asyncio.run(scenario())
        assert server.process.wait(10) == 0
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    assert refused and all(r.status() == "StatusCode.UNAVAILABLE" for r in refused)
    assert seconds < 5, "the second signal waited for the in-flight calls"


def test_concurrent_grpc_calls_are_batched_as_concurrent_http_requests_are(tmp_path, mlp_path):
    """A gRPC call counts as arriving from its start until its handler runs, so the batcher waits for the
    calls under way instead of running each alone: closed-loop clients in another process (each sends its
    next call when the answer is in, as the benchmark's do) got 1.0-1.1 calls per model run before."""
    clients, calls = 16, 25
    rows = np.ones((1, 4), np.float32)
    with serve(tmp_path, "--model-uri", str(mlp_path), "--model-name", "mlp") as server:
        server.wait_ready()

        async def closed_loop():
            client = triton_aio.InferenceServerClient(server.grpc_target)
            try:
                async def one_client():
                    for _ in range(calls):
                        await client.infer("mlp", [fp32_input("input", rows)], client_timeout=20)

                await asyncio.gather(*(one_client() for _ in range(clients)))
            finally:
                await client.close()

        asyncio.run(closed_loop())
        metrics = httpx.get(server.url + "/metrics").text
    runs = _sample(metrics, "modelops_inference_batch_requests_count{")
    merged = _sample(metrics, "modelops_inference_batch_requests_sum{")
    assert merged >= clients * calls  # every call, and the warm-up run
    assert merged / runs >= 2, f"gRPC calls were hardly batched: {merged / runs:.2f} calls per model run"
