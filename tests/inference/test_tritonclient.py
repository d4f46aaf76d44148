"""The standard Open Inference Protocol client (tritonclient's HTTP client) against a real `modelops-serve`
process: at its defaults (tensors in binary both ways), in JSON, and mixed, for every v2 datatype; its
metadata calls; its errors; and the server shedding load past --max-queue-depth with 503 and Retry-After."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import time

import httpx
import numpy as np
import pytest

from . import models
from .test_server_process import _sample, serve, v2_body

httpclient = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

DATATYPES = list(models.V2_TO_ONNX)


def connect(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def assert_same(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    if datatype == "BYTES":  # tritonclient hands binary strings back as bytes, JSON ones as str
        assert [v.decode() if isinstance(v, bytes) else v for v in got.ravel()] == list(want.ravel())
    else:
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


@pytest.fixture(scope="module")
def mlp_server(tmp_path_factory, mlp_path):
    with serve(tmp_path_factory.mktemp("mlp"), "--model-uri", str(mlp_path), "--model-version", "4") as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def all_types_server(tmp_path_factory, all_types_path):
    with serve(tmp_path_factory.mktemp("all"), "--model-uri", str(all_types_path), "--model-name", "all") as server:
        server.wait_ready()
        yield server


def test_tritonclient_at_its_defaults_gets_the_models_answer(mlp_server):
    client = connect(mlp_server)
    rows = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    result = client.infer("mlp", [infer_input("input", rows, "FP32")], request_id="t1")
    models.assert_mlp_answers(result.as_numpy("probabilities"), rows)
    response = result.get_response()
    assert response["id"] == "t1" and response["model_version"] == "4"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 5 * 3 * 4
    json_only = client.infer("mlp", [infer_input("input", rows, "FP32", binary=False)],
                             outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)])
    assert "data" in json_only.get_response()["outputs"][0]
    models.assert_mlp_answers(json_only.as_numpy("probabilities"), rows)


def test_tritonclient_metadata_calls(mlp_server):
    client = connect(mlp_server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mlp")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("mlp")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]


@pytest.mark.parametrize("encoding", ["binary", "json", "mixed"])
def test_every_datatype_round_trips_with_tritonclient(all_types_server, encoding):
    client = connect(all_types_server)
    samples = {t: models.sample(t, 3, seed=DATATYPES.index(t)) for t in DATATYPES}
    inputs, outputs = [], []
    for i, (datatype, array) in enumerate(samples.items()):
        binary = encoding == "binary" or (encoding == "mixed" and i % 2 == 0)
        inputs.append(infer_input(datatype.lower(), array, datatype, binary=binary))
        binary_out = encoding == "binary" or (encoding == "mixed" and i % 3 != 0)
        outputs.append(httpclient.InferRequestedOutput(f"{datatype.lower()}_out", binary_data=binary_out))
    result = client.infer("all", inputs, outputs=outputs)
    for datatype, array in samples.items():
        assert_same(result.as_numpy(f"{datatype.lower()}_out"), array, datatype)
    sent_binary = {o["name"] for o in result.get_response()["outputs"] if "parameters" in o}
    if encoding == "mixed":
        assert 0 < len(sent_binary) < len(DATATYPES)


def test_all_outputs_binary_by_default_when_tritonclient_names_none(all_types_server):
    client = connect(all_types_server)
    inputs = [infer_input(t.lower(), models.sample(t, 2), t) for t in DATATYPES]
    result = client.infer("all", inputs, parameters={"trace_tag": "abc"})
    response = result.get_response()
    assert all(o["parameters"]["binary_data_size"] >= 0 for o in response["outputs"])
    assert response["parameters"] == {"binary_data_output": True, "trace_tag": "abc"}
    assert_same(result.as_numpy("fp16_out"), models.sample("FP16", 2), "FP16")


def test_tritonclient_sees_the_servers_400_naming_the_input(all_types_server):
    client = connect(all_types_server)
    inputs = [infer_input(t.lower(), models.sample(t, 2), t) for t in DATATYPES]
    inputs[10] = infer_input("fp32", models.sample("FP64", 2), "FP64")
    with pytest.raises(InferenceServerException) as error:
        client.infer("all", inputs)
    assert error.value.status() == "400"
    assert "input 'fp32'.datatype: FP32 expected, got 'FP64'" in error.value.message()


def test_non_finite_outputs_reach_tritonclient_in_json_and_in_binary(tmp_path, identity_path):
    values = np.array([[math.nan, math.inf], [-math.inf, 1.5]], np.float32)
    with serve(tmp_path, "--model-uri", str(identity_path), "--model-name", "identity") as server:
        server.wait_ready()
        client = connect(server)
        for binary in (True, False):
            output = httpclient.InferRequestedOutput("output", binary_data=binary)
            result = client.infer("identity", [infer_input("input", values, "FP32")], outputs=[output])
            np.testing.assert_array_equal(result.as_numpy("output"), values)
        raw = httpx.post(server.url + "/v2/models/identity/infer", json={"inputs": [
            {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": ["NaN", "-Infinity"]}]})
        assert raw.json()["outputs"][0]["data"] == ["NaN", "-Infinity"]


async def _burst(url: str, count: int) -> list[tuple[int, str | None, float]]:
    """`count` requests at once, each on its own connection: (status, Retry-After, seconds). Each is
    2,048 rows of the slow model (about half a second of compute), so the queue stays full for a second
    or more after it is seen full, on a loaded machine too: at 64 rows it drained in ~35 ms, and a
    request sent just after could find room."""
    body = v2_body(np.ones((2048, 4), np.float32))

    async def one(client: httpx.AsyncClient):
        started = time.monotonic()
        response = await client.post(url, json=body)
        return response.status_code, response.headers.get("retry-after"), time.monotonic() - started

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(*(one(client) for _ in range(count)))


def _two_on_one_connection(address: str, path: str) -> list[int]:
    """Two requests on one keep-alive connection, each with a body: a refusal skips the body it never
    read, so the second request is parsed from the right byte."""
    connection = http.client.HTTPConnection(address, timeout=30)
    body = json.dumps(v2_body(np.ones((256, 4), np.float32)))
    statuses = []
    for _ in range(2):
        connection.request("POST", path, body)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    return statuses


def test_past_the_queue_depth_the_server_answers_503_with_retry_after_at_once(tmp_path):
    slow = models.slow(tmp_path / "slow.onnx")
    args = ("--model-uri", str(slow), "--model-name", "slow", "--batching", "false", "--max-queue-depth", "2")
    path = "/v2/models/slow/infer"
    with serve(tmp_path, *args) as server:
        server.wait_ready()

        async def scenario():
            burst = asyncio.create_task(_burst(server.url + path, 12))
            async with httpx.AsyncClient() as client:
                while _sample((await client.get(server.url + "/metrics")).text,
                              "modelops_inference_queue_depth{") < 2:
                    await asyncio.sleep(0.01)
            statuses = await asyncio.to_thread(_two_on_one_connection, server.url.removeprefix("http://"), path)
            return await burst, statuses

        results, keep_alive = asyncio.run(scenario())
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 503]
        assert len(served) + len(refused) == 12 and len(served) >= 2 and refused
        assert all(retry == "1" for _, retry, _ in refused)
        assert max(seconds for *_, seconds in refused) < min(seconds for *_, seconds in served)
        assert keep_alive[0] == 503 and keep_alive[1] in (200, 503)
        metrics = httpx.get(server.url + "/metrics").text
        assert _sample(metrics, "modelops_inference_requests_rejected_total{") == len(refused) + keep_alive.count(503)
        assert _sample(metrics, "modelops_inference_queue_depth{") == 0
        assert httpx.post(server.url + path, json=v2_body(np.ones((1, 4), np.float32))).status_code == 200
    lines = [line for line in server.log_lines() if line.get("event") == "overloaded"]
    assert len(lines) == 1 and lines[0]["level"] == "WARNING"  # logged once, not once per refusal
