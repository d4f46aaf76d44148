"""The gRPC listener in process on a real ModelServer and ONNX model: the six v2 methods, readiness and
health, errors through the one table, metrics and logs shared with HTTP, HTTP and gRPC requests batched
into the same model run, and stopping with requests in flight."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from modelops_inference import grpc_protocol as wire
from modelops_inference.errors import ModelNotReady
from modelops_inference.protocol import EXTENSIONS
from modelops_inference.runtime import ModelRuntime
from modelops_inference.server import create_app
from modelops_inference.tensors import to_raw

from . import models
from .conftest import grpc_serving

SERVICE = "/inference.GRPCInferenceService/"


def call(target: str, method: str, request, response_class, timeout: float = 10):
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString,
                                   response_deserializer=response_class.FromString)
        return stub(request, timeout=timeout)


def infer(target: str, rows: np.ndarray, raw: bool = True, **fields):
    request = wire.ModelInferRequest(model_name="mlp", **fields)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=rows.shape)
    if raw:
        request.raw_input_contents.append(bytes(to_raw(rows)))
    else:
        tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    return call(target, "ModelInfer", request, wire.ModelInferResponse)


def probabilities(response) -> np.ndarray:
    [tensor] = response.outputs
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(tensor.shape)
    return np.array(tensor.contents.fp32_contents, np.float32).reshape(tensor.shape)


def health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=10).status


def code_of(fn) -> tuple[grpc.StatusCode, str, tuple]:
    with pytest.raises(grpc.RpcError) as error:
        fn()
    return error.value.code(), error.value.details(), tuple(error.value.trailing_metadata() or ())


@pytest.fixture
def serving(mlp_path, mlp_sha256):
    with grpc_serving(model_uri=str(mlp_path), model_version="3", model_sha256=mlp_sha256) as s:
        yield s


ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1, -1, 2, -2]], np.float32)


def test_health_readiness_and_metadata(serving):
    target = serving.target
    assert call(target, "ServerLive", wire.ServerLiveRequest(), wire.ServerLiveResponse).live
    assert call(target, "ServerReady", wire.ServerReadyRequest(), wire.ServerReadyResponse).ready
    assert call(target, "ModelReady", wire.ModelReadyRequest(name="mlp", version="3"), wire.ModelReadyResponse).ready
    meta = call(target, "ServerMetadata", wire.ServerMetadataRequest(), wire.ServerMetadataResponse)
    assert meta.name == "modelops-inference" and meta.version
    # the server's extensions, as GET /v2 lists them: one server, whichever protocol asks
    assert list(meta.extensions) == list(EXTENSIONS) == ["binary_tensor_data", "parameters"]
    model = call(target, "ModelMetadata", wire.ModelMetadataRequest(name="mlp"), wire.ModelMetadataResponse)
    assert (model.name, list(model.versions), model.platform) == ("mlp", ["3"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("input", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [("probabilities", "FP32", [-1, 3])]
    for service in ("", "inference.GRPCInferenceService", "liveness"):
        assert health(target, service) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "contents"])
def test_infer_answers_the_models_output_in_the_requests_encoding(serving, raw):
    response = infer(serving.target, ROWS, raw=raw, id="req-7")
    assert (response.model_name, response.model_version, response.id) == ("mlp", "3", "req-7")
    assert bool(response.raw_output_contents) is raw
    models.assert_mlp_answers(probabilities(response), ROWS)


def test_unknown_models_versions_and_methods(serving):
    target = serving.target
    code, details, _ = code_of(lambda: call(target, "ModelReady", wire.ModelReadyRequest(name="digits"),
                                            wire.ModelReadyResponse))
    assert code == grpc.StatusCode.NOT_FOUND and details == "model 'digits' not found; this server serves 'mlp'"
    code, details, _ = code_of(lambda: infer(target, ROWS, model_version="9"))
    assert code == grpc.StatusCode.NOT_FOUND and "version '9' of model 'mlp' not found; serving version 3" in details
    code, _, _ = code_of(lambda: call(target, "ModelConfig", wire.ServerLiveRequest(), wire.ServerLiveResponse))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    code, details, _ = code_of(lambda: health(target, "other"))
    assert code == grpc.StatusCode.NOT_FOUND and "unknown service 'other'" in details


def test_invalid_input_is_invalid_argument_in_the_words_http_uses(serving, caplog):
    caplog.set_level(logging.WARNING)
    code, details, _ = code_of(lambda: infer(serving.target, np.zeros((2, 3), np.float32)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "input 'input'.shape: shape [-1, 4] expected (-1: any size), got [2, 3]"
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "request_error"]
    assert (record.levelname, record.status, record.protocol, record.grpc_code) == (
        "WARNING", 400, "grpc", "INVALID_ARGUMENT")
    assert record.path == "/inference.GRPCInferenceService/ModelInfer"


def test_a_message_larger_than_the_body_limit_is_resource_exhausted(mlp_path):
    with grpc_serving(model_uri=str(mlp_path), max_body_bytes=1000) as serving:
        code, _, _ = code_of(lambda: infer(serving.target, np.zeros((100, 4), np.float32)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert infer(serving.target, ROWS).outputs


def test_a_model_that_failed_to_load_leaves_grpc_live_but_not_ready(mlp_path):
    with grpc_serving(model_uri=str(mlp_path), model_sha256="a" * 64) as serving:
        target = serving.target
        assert call(target, "ServerLive", wire.ServerLiveRequest(), wire.ServerLiveResponse).live
        assert not call(target, "ServerReady", wire.ServerReadyRequest(), wire.ServerReadyResponse).ready
        assert not call(target, "ModelReady", wire.ModelReadyRequest(name="mlp"), wire.ModelReadyResponse).ready
        assert health(target) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(target, "liveness") == health_pb2.HealthCheckResponse.SERVING
        code, details, _ = code_of(lambda: infer(target, ROWS))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert details.startswith("model 'mlp' is not ready: model failed to load: sha256 mismatch")
        code, _, _ = code_of(lambda: call(target, "ModelMetadata", wire.ModelMetadataRequest(name="mlp"),
                                          wire.ModelMetadataResponse))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_draining_fails_readiness_at_once_and_keeps_serving(serving):
    serving.server.drain()
    assert not call(serving.target, "ServerReady", wire.ServerReadyRequest(), wire.ServerReadyResponse).ready
    assert health(serving.target) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(serving.target, "liveness") == health_pb2.HealthCheckResponse.SERVING
    models.assert_mlp_answers(probabilities(infer(serving.target, ROWS)), ROWS)


def test_health_watch_reports_changes_and_ends_when_the_listener_stops(serving):
    seen = []

    def watch():
        with grpc.insecure_channel(serving.target) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
            seen.extend(update.status for update in stream)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)
    serving.server.drain()
    time.sleep(1.5)
    started = time.monotonic()
    serving.run(serving.listener.stop())
    watcher.join(10)
    assert time.monotonic() - started < 5, "an open Watch held the stop to its timeout"
    assert seen == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]


def test_an_error_that_says_when_to_retry_sends_grpc_retry_pushback(serving):
    async def refuse(inputs):
        error = ModelNotReady("queue full: 64 requests waiting (--max-queue)")
        error.retry_after_seconds = 1.5
        raise error

    serving.server.runner.submit = refuse
    code, details, trailers = code_of(lambda: infer(serving.target, ROWS))
    assert (code, details) == (grpc.StatusCode.UNAVAILABLE, "queue full: 64 requests waiting (--max-queue)")
    assert ("grpc-retry-pushback-ms", "1500") in trailers


def test_a_full_server_refuses_grpc_inference_at_once_with_unavailable_and_retry_pushback(mlp_path):
    with grpc_serving(model_uri=str(mlp_path), max_queue_depth=1) as serving:
        admission = serving.server.admission
        assert admission.try_admit()  # what an HTTP request does: the one place is taken
        try:
            code, details, trailers = code_of(lambda: infer(serving.target, ROWS))
        finally:
            admission.release()
        assert (code, details) == (grpc.StatusCode.UNAVAILABLE, str(admission.overloaded()))
        assert ("grpc-retry-pushback-ms", "1000") in trailers
        assert (admission.rejected, admission.in_flight, in_flight(serving.server)) == (1, 0, 0)
        assert probabilities(infer(serving.target, ROWS)).shape == (2, 3)  # room again


def scrape(server) -> dict:
    samples = {}
    for family in text_string_to_metric_families(server.metrics.exposition().decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_grpc_requests_are_counted_in_the_same_series_with_their_protocol(serving):
    infer(serving.target, ROWS)
    code_of(lambda: infer(serving.target, np.zeros((1, 2), np.float32)))
    health(serving.target)
    samples = scrape(serving.server)
    model = {"model_name": "mlp", "model_version": "3", "protocol": "grpc"}

    def value(name, **labels):
        return samples[(name, frozenset({**model, **labels}.items()))]

    assert value("modelops_inference_requests_total", endpoint="infer", status_code="200") == 1
    assert value("modelops_inference_requests_total", endpoint="infer", status_code="400") == 1
    assert value("modelops_inference_requests_total", endpoint="infer", status_code="503") == 0
    assert value("modelops_inference_requests_total", endpoint="health_check", status_code="200") == 1
    assert value("modelops_inference_request_duration_seconds_count", endpoint="infer") == 2
    assert in_flight(serving.server) == 0


def in_flight(server) -> float:
    return server.metrics.registry.get_sample_value("modelops_inference_requests_in_flight",
                                                    {"model_name": "mlp", "model_version": server.config.model_version})


def test_http_and_grpc_requests_are_batched_into_the_same_model_runs(mlp_path):
    """Rows from HTTP carry 1.0, rows from gRPC 2.0; while a slowed first run holds the model thread, both
    protocols' requests queue in the one runner, and the next run takes some of each."""
    batches = []

    class Recording(ModelRuntime):
        def run(self, inputs):
            if self.state.value == "ready":  # not the warm-up
                batches.append(sorted(set(inputs["input"][:, 0].tolist())))
                time.sleep(0.2 if len(batches) == 1 else 0)
            return super().run(inputs)

    with grpc_serving(Recording, model_uri=str(mlp_path), max_batch_size=64, max_batch_delay_ms=50) as serving:
        server = serving.server
        app = create_app(server.config, server)

        async def both():
            async with (httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http,
                        grpc.aio.insecure_channel(serving.target) as channel):
                stub = channel.unary_unary(SERVICE + "ModelInfer",
                                           request_serializer=wire.ModelInferRequest.SerializeToString,
                                           response_deserializer=wire.ModelInferResponse.FromString)

                def grpc_request():
                    request = wire.ModelInferRequest(model_name="mlp")
                    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
                    request.raw_input_contents.append(bytes(to_raw(np.full((1, 4), 2.0, np.float32))))
                    return stub(request, timeout=20)

                body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4}]}
                first = asyncio.ensure_future(http.post("/v2/models/mlp/infer", json=body))
                await asyncio.sleep(0.05)  # the first run has started and holds the model thread
                rest = [asyncio.ensure_future(http.post("/v2/models/mlp/infer", json=body)) for _ in range(8)]
                rest += [asyncio.ensure_future(grpc_request()) for _ in range(8)]
                return await asyncio.gather(first, *rest)

        answers = serving.run(both())
    http_answers, grpc_answers = answers[:9], answers[9:]
    assert all(a.status_code == 200 for a in http_answers) and len(grpc_answers) == 8
    models.assert_mlp_answers(probabilities(grpc_answers[0]), np.full((1, 4), 2.0, np.float32))
    assert [1.0, 2.0] in batches, f"no model run held rows of both protocols: {batches}"


def test_stopping_finishes_in_flight_calls_and_refuses_new_ones(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    with grpc_serving(model_uri=str(slow), model_name="mlp", batching=False) as serving:
        rows = np.ones((64, 4), np.float32)

        async def scenario():
            async with grpc.aio.insecure_channel(serving.target) as channel:
                stub = channel.unary_unary(SERVICE + "ModelInfer",
                                           request_serializer=wire.ModelInferRequest.SerializeToString,
                                           response_deserializer=wire.ModelInferResponse.FromString)
                request = wire.ModelInferRequest(model_name="mlp")
                request.inputs.add(name="input", datatype="FP32", shape=rows.shape)
                request.raw_input_contents.append(bytes(to_raw(rows)))
                calls = [asyncio.ensure_future(stub(request, timeout=60)) for _ in range(4)]
                while in_flight(serving.server) < 4:
                    await asyncio.sleep(0.01)
                stopping = asyncio.ensure_future(serving.listener.stop())
                await asyncio.sleep(0.1)
                try:
                    await stub(request, timeout=10)
                    refused = None
                except grpc.aio.AioRpcError as e:
                    refused = e.code()
                answers = await asyncio.gather(*calls)
                await stopping
                return refused, answers

        refused, answers = serving.run(scenario())
    assert refused == grpc.StatusCode.UNAVAILABLE
    for answer in answers:
        np.testing.assert_allclose(np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(64, 4), rows)

