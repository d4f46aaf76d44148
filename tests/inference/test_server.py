"""The HTTP API in process: Open Inference Protocol v2 and KServe v1 routes, health semantics, every
error as a 4xx JSON body, and the metrics endpoint."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

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
    assert meta["name"] == "modelops-inference" and "version" in meta


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
    expected = models.mlp_reference(np.array(ROWS, dtype=np.float32))
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 3), expected, rtol=1e-5)


def test_v1_predict_returns_one_prediction_per_instance(client):
    response = client.post("/v1/models/mlp:predict", json={"instances": ROWS})
    assert response.status_code == 200
    predictions = np.array(response.json()["predictions"])
    np.testing.assert_allclose(predictions, models.mlp_reference(np.array(ROWS, dtype=np.float32)), rtol=1e-5)
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


def test_the_binary_tensor_extension_is_refused_with_a_clear_message(client):
    response = client.post("/v2/models/mlp/infer", content=b"{}\x00\x01",
                           headers={"Inference-Header-Content-Length": "2"})
    assert response.status_code == 400
    assert "binary tensor data extension" in response.json()["error"]


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
