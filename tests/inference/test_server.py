"""The HTTP API in process: Open Inference Protocol v2 and KServe v1 routes, health semantics, every
error as a 4xx JSON body, and the metrics endpoint."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_inference import protocol
from modelops_inference import tensors as tensors_module
from modelops_inference.config import ServerConfig
from modelops_inference.runtime import ModelRuntime
from modelops_inference.server import ModelServer, create_app

from . import models
from .conftest import TestClient, make_client, wait_ready

ROWS = [[0.1, 0.2, 0.3, 0.4], [1, -1, 2, -2]]


def infer_body(rows=ROWS, **fields):
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": flat}], **fields}


def test_liveness_readiness_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    assert client.get("/v2/models/mlp/versions/3/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "modelops-inference" and "version" in meta and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_comes_from_the_onnx_graph(client):
    expected = {
        "name": "mlp",
        "versions": ["3"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert client.get("/v2/models/mlp").json() == expected
    assert client.get("/v2/models/mlp/versions/3").json() == expected


@pytest.mark.parametrize("path", ["/v2/models/mlp/infer", "/v2/models/mlp/versions/3/infer"])
def test_v2_infer_returns_the_models_output_and_echoes_the_id(client, path):
    response = client.post(path, json=infer_body(id="req-42"))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("mlp", "3", "req-42")
    [out] = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("probabilities", "FP32", [2, 3])
    models.assert_mlp_answers(np.array(out["data"]).reshape(2, 3), np.array(ROWS, dtype=np.float32))


def test_v1_predict_returns_one_prediction_per_instance(client):
    response = client.post("/v1/models/mlp:predict", json={"instances": ROWS})
    assert response.status_code == 200
    predictions = np.array(response.json()["predictions"])
    models.assert_mlp_answers(predictions, np.array(ROWS, dtype=np.float32))
    assert client.get("/v1/models").json() == {"models": ["mlp"]}
    assert client.get("/v1/models/mlp").json() == {"name": "mlp", "ready": True}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("post", "/v2/models/mlp/infer", b'{"inputs": [', 400, "request body is not valid JSON"),
        ("post", "/v2/models/mlp/infer", b"", 400, "request body is empty"),
        ("post", "/v2/models/mlp/infer", {"inputs": []}, 400, "inputs: expected a non-empty list"),
        ("post", "/v2/models/mlp/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
         400, "unknown input 'x'; model inputs are ['input']"),
        ("post", "/v2/models/mlp/infer",
         {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]},
         400, "input 'input'.datatype: FP32 expected, got 'INT32'"),
        ("post", "/v2/models/mlp/infer",
         {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]},
         400, "shape [-1, 4] expected (-1: any size), got [1, 5]"),
        ("post", "/v2/models/mlp/infer",
         {"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}]}, 400, "empty batch"),
        ("post", "/v2/models/other/infer", infer_body(), 404, "model 'other' not found; this server serves 'mlp'"),
        ("post", "/v2/models/mlp/versions/9/infer", infer_body(), 404,
         "version '9' of model 'mlp' not found; serving version 3"),
        ("get", "/v2/models/other", None, 404, "model 'other' not found"),
        ("get", "/v2/models/other/ready", None, 404, "model 'other' not found"),
        ("get", "/v2/models/mlp/versions/1/ready", None, 404, "version '1' of model 'mlp' not found"),
        ("post", "/v1/models/other:predict", {"instances": ROWS}, 404, "model 'other' not found"),
        ("post", "/v1/models/mlp:predict", {"instances": []}, 400, "instances: empty batch"),
        ("post", "/v1/models/mlp:predict", {"instances": [[1, 2]]}, 400, "shape [-1, 4] expected"),
        ("get", "/v3/nothing", None, 404, "GET /v3/nothing: Not Found"),
        ("get", "/v2/models/mlp/infer", None, 405, "GET /v2/models/mlp/infer: Method Not Allowed; use POST"),
    ],
)
def test_bad_requests_get_a_json_4xx_naming_the_problem(client, method, path, body, status, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_a_body_over_the_limit_is_413(mlp_path):
    with make_client(model_uri=str(mlp_path), max_body_bytes=100) as c:
        wait_ready(c)
        response = c.post("/v2/models/mlp/infer", json=infer_body(ROWS * 10))
        assert response.status_code == 413
        assert "the limit is 100 (--max-body-bytes)" in response.json()["error"]
        chunked = c.post("/v2/models/mlp/infer", content=iter([b"{" * 60, b" " * 60]))
        assert chunked.status_code == 413
        assert "exceeds the limit of 100 bytes" in chunked.json()["error"]


def binary_body(tensors: list[tuple[str, np.ndarray]], **fields) -> tuple[bytes, dict]:
    """A v2 request with every tensor in binary after the JSON header, and the header that sizes it."""
    items, blobs = [], []
    for name, array in tensors:
        raw = tensors_module.to_raw(array)
        datatype = tensors_module.NUMPY_TO_V2[array.dtype]
        items.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                      "parameters": {"binary_data_size": len(raw)}})
        blobs.append(bytes(raw))
    header = json.dumps({"inputs": items, **fields}).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def split_response(response) -> tuple[dict, bytes]:
    length = response.headers.get("inference-header-content-length")
    if length is None:
        return response.json(), b""
    return json.loads(response.content[:int(length)]), response.content[int(length):]


def test_binary_inputs_and_binary_outputs_in_process(client):
    rows = np.array(ROWS, np.float32)
    body, headers = binary_body([("input", rows)], id="b1", parameters={"binary_data_output": True})
    response = client.post("/v2/models/mlp/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header, binary = split_response(response)
    [out] = header["outputs"]
    assert out["parameters"] == {"binary_data_size": 2 * 3 * 4} and "data" not in out
    assert header["id"] == "b1" and header["parameters"] == {"binary_data_output": True}
    models.assert_mlp_answers(np.frombuffer(binary, np.float32).reshape(2, 3), rows)


def test_binary_inputs_with_json_outputs_are_plain_json(client):
    body, headers = binary_body([("input", np.array(ROWS, np.float32))])
    response = client.post("/v2/models/mlp/infer", content=body, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    assert len(response.json()["outputs"][0]["data"]) == 6


def test_every_datatype_in_json_and_in_binary(all_types_path):
    with make_client(model_uri=str(all_types_path), model_name="all") as c:
        wait_ready(c)
        samples = models.all_types_rows(3, seed=1)
        as_json = [{"name": n, "shape": [3, 2], "datatype": n.upper(), "data": tensors_module.to_json(a)}
                   for n, a in samples.items()]
        payload = protocol.dumps({"inputs": as_json})
        answer = c.post("/v2/models/all/infer", content=payload)
        assert answer.status_code == 200, answer.text
        for out in answer.json()["outputs"]:
            name = out["name"].removesuffix("_out")
            assert out["datatype"] == name.upper() and out["shape"] == [3, 2]
            back = tensors_module.from_json(out["data"], out["datatype"], name).reshape(3, 2)
            assert back.tolist() == samples[name].tolist(), name
        body, headers = binary_body(list(samples.items()), parameters={"binary_data_output": True})
        response = c.post("/v2/models/all/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        header, binary = split_response(response)
        offset = 0
        for out in header["outputs"]:
            size = out["parameters"]["binary_data_size"]
            name = out["name"].removesuffix("_out")
            back = tensors_module.from_raw(binary[offset:offset + size], out["datatype"], out["shape"], name)
            assert back.tolist() == samples[name].tolist(), name
            offset += size
        assert offset == len(binary)


def test_a_datatype_the_input_does_not_take_names_the_input_what_came_and_what_it_takes(all_types_path):
    with make_client(model_uri=str(all_types_path), model_name="all") as c:
        wait_ready(c)
        samples = [{"name": t.lower(), "shape": [1, 2], "datatype": t, "data": tensors_module.to_json(
            models.sample(t, 1))} for t in models.V2_TO_ONNX]
        samples[1]["datatype"] = "INT8"
        response = c.post("/v2/models/all/infer", content=protocol.dumps({"inputs": samples}))
        assert response.status_code == 400
        assert response.json()["error"] == ("input 'uint8'.datatype: UINT8 expected, got 'INT8'; the model takes "
                                            "only UINT8 here (onnxruntime converts nothing)")
        samples[1]["datatype"] = "BF16"
        message = c.post("/v2/models/all/infer", content=protocol.dumps({"inputs": samples})).json()["error"]
        assert message.startswith("input 'uint8'.datatype: UINT8 expected, got 'BF16' (not a v2 datatype")


def test_non_finite_outputs_are_strings_in_json(identity_path):
    with make_client(model_uri=str(identity_path), model_name="identity") as c:
        wait_ready(c)
        values = np.array([[np.nan, np.inf], [-np.inf, 0.25]], np.float32)
        body, headers = binary_body([("input", values)])
        response = c.post("/v2/models/identity/infer", content=body, headers=headers)
        assert response.json()["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 0.25]
        echoed = c.post("/v2/models/identity/infer", json={"inputs": [
            {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": ["NaN", "Infinity", "-Infinity", 0.25]}]})
        assert echoed.json()["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 0.25]
        v1 = c.post("/v1/models/identity:predict", json={"instances": [["NaN", 1]]})
        assert v1.json() == {"predictions": [["NaN", 1.0]]}


def test_server_metadata_lists_the_extensions(client):
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data", "parameters"]


@pytest.mark.parametrize(
    ("path", "headers", "content", "status", "message"),
    [
        ("/v2/models/mlp/infer", {"Content-Encoding": "gzip"}, b"\x1f\x8b", 415,
         "Content-Encoding 'gzip' is not supported; send the body uncompressed"),
        ("/v1/models/mlp:predict", {"Inference-Header-Content-Length": "2"}, b"{}", 400,
         "the binary tensor data extension belongs to v2"),
        ("/v2/models/mlp/infer", {"Inference-Header-Content-Length": "50"}, b"{}", 400,
         "Inference-Header-Content-Length: 50 is more than the whole body (2 bytes)"),
        ("/v2/models/mlp/infer", {"Inference-Header-Content-Length": "x"}, b"{}", 400,
         "Inference-Header-Content-Length: expected the JSON header's size in bytes"),
    ],
)
def test_bad_encodings_are_4xx_naming_the_header(client, path, headers, content, status, message):
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == status and message in response.json()["error"]


def test_past_the_queue_depth_requests_get_503_with_retry_after_and_probes_keep_answering(mlp_path):
    with make_client(model_uri=str(mlp_path), max_queue_depth=2) as c:
        wait_ready(c)
        admission = c.app.state.server.admission
        assert admission.try_admit() and admission.try_admit()  # as if two requests were in progress
        refused = c.post("/v2/models/mlp/infer", json=infer_body())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "at capacity (2 inference requests in progress, --max-queue-depth)" in refused.json()["error"]
        assert c.post("/v1/models/mlp:predict", json={"instances": ROWS}).status_code == 503
        assert c.get("/v2/health/ready").status_code == 200 and c.get("/v2/models/mlp").status_code == 200
        admission.release()
        assert c.post("/v2/models/mlp/infer", json=infer_body()).status_code == 200
        assert admission.in_flight == 1  # the one still held above; every served request was released
        samples = scrape(c)
        model = frozenset({"model_name": "mlp", "model_version": ""}.items())
        assert samples[("modelops_inference_requests_rejected_total", model)] == 2
        assert samples[("modelops_inference_queue_depth", model)] == 1
        assert samples[("modelops_inference_queue_depth_limit", model)] == 2


def test_onnxruntime_failures_on_well_formed_input_are_422(lookup_path):
    with make_client(model_uri=str(lookup_path), model_name="lookup") as c:
        wait_ready(c)
        ok = {"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": [0, 4]}]}
        assert c.post("/v2/models/lookup/infer", json=ok).json()["outputs"][0]["data"] == [0, 1, 8, 9]
        bad = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [99]}]}
        response = c.post("/v2/models/lookup/infer", json=bad)
        assert response.status_code == 422
        assert "the model could not run on this input" in response.json()["error"]


def test_several_inputs_and_requested_outputs(two_inputs_path):
    with make_client(model_uri=str(two_inputs_path), model_name="two") as c:
        wait_ready(c)
        tensors = [{"name": n, "shape": [1, 2], "datatype": "FP32", "data": [2, 3]} for n in ("a", "b")]
        body = c.post("/v2/models/two/infer", json={"inputs": tensors, "outputs": [{"name": "product"}]}).json()
        assert body["outputs"] == [{"name": "product", "shape": [1, 2], "datatype": "FP32", "data": [4.0, 9.0]}]
        v1 = c.post("/v1/models/two:predict", json={"instances": [{"a": [1, 2], "b": [3, 4]}]}).json()
        assert v1 == {"predictions": [{"sum": [4.0, 6.0], "product": [3.0, 8.0]}]}


def test_a_model_with_a_fixed_batch_dimension_is_served_without_batching(fixed_batch_path):
    with make_client(model_uri=str(fixed_batch_path), model_name="fixed") as c:
        wait_ready(c)
        assert type(c.app.state.server.runner).__name__ == "Runner"
        assert c.post("/v1/models/fixed:predict", json={"instances": ROWS}).status_code == 200
        assert c.post("/v1/models/fixed:predict", json={"instances": ROWS[:1]}).status_code == 400


def test_a_bad_sha256_keeps_the_server_live_but_not_ready_and_says_why(mlp_path):
    with make_client(model_uri=str(mlp_path), model_sha256="f" * 64) as c:
        wait_ready(c)
        assert c.get("/v2/health/live").status_code == 200
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 400
        assert ready.json()["ready"] is False
        assert "sha256 mismatch for mlp.onnx: expected ffff" in ready.json()["reason"]
        model_ready = c.get("/v2/models/mlp/ready")
        assert model_ready.status_code == 400 and "sha256 mismatch" in model_ready.json()["reason"]
        infer = c.post("/v2/models/mlp/infer", json=infer_body())
        assert infer.status_code == 503 and "sha256 mismatch" in infer.json()["error"]
        assert c.get("/v2/models/mlp").status_code == 503
        assert 'modelops_inference_model_ready{model_name="mlp",model_version=""} 0.0' in c.get("/metrics").text


def test_draining_fails_readiness_but_keeps_serving(client):
    client.app.state.server.drain()
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 400 and ready.json()["reason"] == "server is shutting down"
    assert client.post("/v2/models/mlp/infer", json=infer_body()).status_code == 200


def scrape(client) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_metrics_are_named_by_convention_and_initialised(client, mlp_sha256):
    client.post("/v2/models/mlp/infer", json=infer_body())
    client.post("/v2/models/mlp/infer", json={"inputs": []})
    samples = scrape(client)
    model = {"model_name": "mlp", "model_version": "3"}

    def value(name, **labels):
        return samples[(name, frozenset({**model, **labels}.items()))]

    http = {"protocol": "http"}
    assert value("modelops_inference_requests_total", **http, endpoint="infer", status_code="200") == 1
    assert value("modelops_inference_requests_total", **http, endpoint="infer", status_code="400") == 1
    assert value("modelops_inference_requests_total", **http, endpoint="predict", status_code="200") == 0
    assert value("modelops_inference_requests_total", **http, endpoint="predict", status_code="503") == 0
    assert value("modelops_inference_requests_total", protocol="grpc", endpoint="infer", status_code="503") == 0
    assert value("modelops_inference_request_duration_seconds_count", **http, endpoint="infer") == 2
    assert value("modelops_inference_request_duration_seconds_count", **http, endpoint="predict") == 0
    assert value("modelops_inference_model_run_duration_seconds_count") == 1
    assert value("modelops_inference_batch_rows_bucket", le="2.0") == 1
    assert value("modelops_inference_batch_rows_bucket", le="1.0") == 0
    assert value("modelops_inference_batch_requests_count") == 1
    assert value("modelops_inference_requests_in_flight") == 0
    assert value("modelops_inference_model_ready") == 1
    assert value("modelops_inference_model_load_duration_seconds") > 0
    assert value("modelops_inference_model_info", sha256=mlp_sha256, platform="onnxruntime_onnx") == 1
    assert ("process_cpu_seconds_total", frozenset()) in samples


def test_a_request_cancelled_mid_way_is_still_counted_and_timed(mlp_path):
    """uvicorn cancels requests still running when its graceful timeout ends: counted as 499, as gRPC
    counts a cancelled call, not lost from the error rate."""
    config = ServerConfig(model_uri=str(mlp_path), model_name="mlp")
    server = ModelServer(config)
    app = create_app(config, server)

    async def main():
        await server.start()
        never = asyncio.Event()

        async def receive():
            await never.wait()  # the body never comes

        async def send(message):
            pass

        scope = {"type": "http", "method": "POST", "path": "/v2/models/mlp/infer", "headers": []}
        request = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.05)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await server.stop()

    asyncio.run(main())
    labels = {"model_name": "mlp", "model_version": "", "protocol": "http", "endpoint": "infer"}
    registry = server.metrics.registry
    assert registry.get_sample_value("modelops_inference_requests_total", {**labels, "status_code": "499"}) == 1
    assert registry.get_sample_value("modelops_inference_request_duration_seconds_count", labels) == 1
    assert server.admission.in_flight == 0


NASTY_BODIES = [
    b"null", b"[]", b"0", b'"x"', b"{}", b'{"inputs": null}', b'{"inputs": {}}', b'{"inputs": [null]}',
    b'{"inputs": [{"name": null, "shape": null, "datatype": null, "data": null}]}',
    b'{"inputs": [{"name": "input", "shape": [1000000000000, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1e999, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, {"a": 1}]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": 5}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": "1234"}]}',
    b'{"inputs": [{"name": "input", "shape": [true, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1.0, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": ["FP32"], "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [1]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "id": {}}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [99999999999999999999999, 2, 3, 4]}]}',
    b"[" * 5000 + b"]" * 5000,
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [[[[[[1, 2, 3, 4]]]]]]}]}',
    b"\x00\x01\x02", "{\"inputs\": \"\u00e9\u2603\"}".encode(),
    b'{"instances": [null]}', b'{"instances": [[1, 2, 3, "x"]]}', b'{"instances": [{"input": 1}]}',
    b'{"instances": [[1, 2, 3, 4], [1, 2]]}', b'{"instances": [[[1, 2, 3, 4]]]}', b'{"instances": {}}',
    b'{"instances": [1, 2, 3, 4]}', b'{"instances": [[true, false, true, false]]}',
]


def test_no_malformed_body_gets_a_500(client):
    rng = np.random.default_rng(0)
    valid = bytearray(b'{"id": "x", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", '
                      b'"data": [1, 2, 3, 4, 5, 6, 7, 8]}]}')
    mutated = []
    for _ in range(300):
        body = bytearray(valid)
        for _ in range(int(rng.integers(1, 4))):
            body[int(rng.integers(len(body)))] = int(rng.choice(list(b'{}[]",:0123456789-.e ntf')))
        mutated.append(bytes(body))
    for body in NASTY_BODIES + mutated:
        for path in ("/v2/models/mlp/infer", "/v1/models/mlp:predict"):
            response = client.post(path, content=body)
            assert response.status_code in (200, 400, 422), (path, body[:200], response.text)
            if response.status_code != 200:
                assert response.json()["error"]


def test_while_the_model_loads_the_server_is_live_not_ready_and_says_so(mlp_path):
    gate = threading.Event()

    class SlowRuntime(ModelRuntime):
        def load(self):
            gate.wait(30)
            super().load()

    config = ServerConfig(model_uri=str(mlp_path), model_name="mlp")
    server = ModelServer(config, SlowRuntime(config))
    with TestClient(create_app(config, server)) as c:
        assert c.get("/v2/health/live").status_code == 200
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 400 and ready.json() == {"ready": False, "reason": "model is loading"}
        infer = c.post("/v2/models/mlp/infer", json=infer_body())
        assert infer.status_code == 503 and "model 'mlp' is not ready: model is loading" in infer.json()["error"]
        gate.set()
        wait_ready(c)
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v2/models/mlp/infer", json=infer_body()).status_code == 200
