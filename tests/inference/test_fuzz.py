"""Property-based fuzzing of the v2 request path (JSON, the binary tensor data extension, every datatype):
valid requests round-trip exactly through an Identity model of every v2 datatype; random, mutated and
truncated bodies, header lengths, binary sizes and BYTES length prefixes get a 4xx naming the problem,
never a 5xx, a hang or a crash; and the server keeps answering valid requests afterwards.

The bulk runs against the ASGI app in process (about a millisecond a request); a smaller set goes to a
real `modelops-serve` over HTTP. Hypothesis runs the deterministic `ci` profile (derandomized, no example
database) unless MODELOPS_HYPOTHESIS_PROFILE=deep asks for a long random search.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops_inference import protocol
from modelops_inference.config import ServerConfig
from modelops_inference.server import ModelServer, create_app
from modelops_inference.tensors import V2_TO_NUMPY, from_json, from_raw, to_json, to_raw

from . import models
from .test_server_process import serve

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("deep", max_examples=20_000, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("MODELOPS_HYPOTHESIS_PROFILE", "ci"))
SCALE = 1 if os.environ.get("MODELOPS_HYPOTHESIS_PROFILE", "ci") == "ci" else 10

DATATYPES = list(models.V2_TO_ONNX)
INFER = "/v2/models/all/infer"
PREDICT = "/v1/models/all:predict"
HEADER = protocol.HEADER_LENGTH

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


# --- requests ------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One request: its JSON header (before encoding), the binary blobs after it, and what a correct
    server answers when the request is left valid."""

    header: dict[str, Any]
    blobs: list[bytes]
    arrays: dict[str, np.ndarray]
    header_length: bytes | None = None  # None: the true length when there are blobs, no header otherwise

    def encode(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        # the standard library, not orjson: mutations put integers past 64 bits in the header
        json_part = json.dumps(self.header, default=_plain, allow_nan=False).encode()
        body = json_part + b"".join(self.blobs)
        length = self.header_length
        if length is None and self.blobs:
            length = str(len(json_part)).encode()
        return body, [(HEADER, length)] if length is not None else []


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


WORDS = np.array(["", "a", "héllo", "日本語", "\x00", "tab\there", "😀", "\\", '"', "x" * 50], dtype=object)


def random_array(datatype: str, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Values over the datatype's whole range (extremes, NaN, infinities, -0.0, non-ASCII text), drawn
    from a seed Hypothesis picks: far cheaper than drawing every element through Hypothesis, and the
    fuzzing is about the encodings, not the numbers."""
    shape = (rows, 2)
    if datatype == "BYTES":
        return rng.choice(WORDS, size=shape)
    dtype = V2_TO_NUMPY[datatype]
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, info.max, -info.max, info.tiny], dtype)
    values = (rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
    mask = rng.random(shape) < 0.3
    values[mask] = rng.choice(special, size=int(mask.sum()))
    return values


@st.composite
def valid_cases(draw) -> Case:
    rows = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = {t: random_array(t, rows, rng) for t in DATATYPES}
    in_binary = draw(st.sets(st.sampled_from(DATATYPES)))
    items, blobs = [], []
    for t in draw(st.permutations(DATATYPES)):
        item: dict[str, Any] = {"name": t.lower(), "shape": [rows, 2], "datatype": t}
        if t in in_binary:
            raw = bytes(to_raw(arrays[t]))
            item["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            item["data"] = to_json(arrays[t])
        items.append(item)
    header: dict[str, Any] = {"id": draw(st.text(max_size=4)), "inputs": items}
    binary_output = draw(st.none() | st.booleans())
    if binary_output is not None:
        header["parameters"] = {"binary_data_output": binary_output, "extra": draw(json_values)}
    wanted = draw(st.none() | st.lists(st.sampled_from(DATATYPES), unique=True, min_size=1))
    if wanted is not None:
        header["outputs"] = []
        for t in wanted:
            choice = draw(st.none() | st.booleans())
            header["outputs"].append({"name": f"{t.lower()}_out"} if choice is None else
                                     {"name": f"{t.lower()}_out", "parameters": {"binary_data": choice}})
    return Case(header, blobs, arrays)


def _mutate_header(draw, header: dict[str, Any]) -> None:
    items = [i for i in header["inputs"] if isinstance(i, dict)] if isinstance(header.get("inputs"), list) else []
    kind = draw(st.sampled_from(["field", "drop", "size", "shape", "datatype", "top", "both"]))
    if kind == "top" or not items:
        header[draw(st.sampled_from(["inputs", "outputs", "parameters", "id"]))] = draw(json_values)
        return
    item = draw(st.sampled_from(items))
    if kind == "field":
        item[draw(st.sampled_from(["name", "shape", "datatype", "data", "parameters"]))] = draw(json_values)
    elif kind == "drop" and item:
        item.pop(draw(st.sampled_from(sorted(item))))
    elif kind == "size":
        item["parameters"] = {"binary_data_size": draw(st.integers() | st.integers(-2, 64) | json_values)}
        item.pop("data", None)
    elif kind == "shape":
        item["shape"] = draw(st.lists(st.integers(-3, 2**62) | st.integers(0, 4), max_size=4))
    elif kind == "datatype":
        item["datatype"] = draw(st.sampled_from([*DATATYPES, "BF16", "", "fp32", "STRING"]))
    elif kind == "both":
        item["data"], item["parameters"] = [0, 0], {"binary_data_size": 0}


def _mutate_bytes(draw, body: bytes, json_length: int) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "prefix"]))
    at = draw(st.integers(0, max(0, len(body) - 1)))
    if kind == "flip" and body:
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
    if kind == "truncate":
        return body[:at]
    if kind == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    if kind == "delete":
        return body[:at] + body[at + draw(st.integers(1, 16)):]
    # a length prefix (or any 4 bytes) of the binary part replaced by an arbitrary uint32
    start = draw(st.integers(json_length, max(json_length, len(body) - 4)))
    return body[:start] + draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little") + body[start + 4:]


@st.composite
def mutated_requests(draw) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    case = draw(valid_cases())
    case.header = copy.deepcopy(case.header)
    for _ in range(draw(st.integers(0, 2))):
        _mutate_header(draw, case.header)
    if draw(st.booleans()):
        case.header_length = draw(st.integers(-5, 4096).map(lambda n: str(n).encode())
                                  | st.binary(max_size=6) | st.sampled_from([b"", b"1e3", b" 12", b"0x10"]))
    body, headers = case.encode()
    json_length = int(headers[0][1]) if headers and headers[0][1].isdigit() else len(body)
    for _ in range(draw(st.integers(0, 3))):
        body = _mutate_bytes(draw, body, min(json_length, len(body)))
    return body, headers


random_requests = st.tuples(
    st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.tuples(st.sampled_from([HEADER, b"content-encoding", b"content-type"]), st.binary(max_size=8)),
             max_size=2),
)


# --- answers -------------------------------------------------------------------------------------------

def decode(status: int, headers: dict[bytes, bytes], body: bytes) -> dict[str, np.ndarray]:
    """The outputs of a 200 answer, read back from JSON and binary alike."""
    assert status == 200, body[:300]
    length = headers.get(HEADER)
    header = orjson.loads(body[:int(length)] if length is not None else body)
    binary, offset, outputs = body[int(length):] if length is not None else b"", 0, {}
    for out in header["outputs"]:
        if "data" in out:
            outputs[out["name"]] = from_json(out["data"], out["datatype"], out["name"]).reshape(out["shape"])
        else:
            size = out["parameters"]["binary_data_size"]
            outputs[out["name"]] = from_raw(binary[offset:offset + size], out["datatype"], out["shape"], out["name"])
            offset += size
    assert offset == len(binary)
    return outputs


def assert_echoes(case: Case, outputs: dict[str, np.ndarray]) -> None:
    wanted = [o["name"] for o in case.header.get("outputs", [])] or [f"{t.lower()}_out" for t in DATATYPES]
    assert list(outputs) == wanted
    for name, got in outputs.items():
        want = case.arrays[name.removesuffix("_out").upper()]
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def assert_client_error(status: int, body: bytes) -> None:
    assert 400 <= status < 500 or status == 200, (status, body[:300])
    if status != 200:
        error = orjson.loads(body)["error"]
        assert isinstance(error, str) and error


# --- in process ----------------------------------------------------------------------------------------

class InProcess:
    """The ASGI app with its model loaded, called directly on one event loop: a request costs what the
    server's own code costs, and a hang is a timeout instead of a stuck test."""

    def __init__(self, model: str):
        config = ServerConfig(model_uri=model, model_name="all")
        self.server = ModelServer(config)
        self.app = create_app(config, self.server)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.start())
        assert self.server.ready, self.server.not_ready_reason

    def post(self, path: str, body: bytes, headers: list[tuple[bytes, bytes]], chunk: int = 0):
        chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk and body else [body]
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)]
        sent: list[dict] = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "root_path": "",
                 "headers": [(b"content-length", str(len(body)).encode()), *headers]}
        self.loop.run_until_complete(asyncio.wait_for(self.app(scope, receive, send), timeout=10))
        start, *rest = sent
        return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in rest)

    def close(self) -> None:
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def app(all_types_path):
    harness = InProcess(str(all_types_path))
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def a_valid_request():
    rows = 2
    arrays = {t: models.sample(t, rows, seed=5) for t in DATATYPES}
    items = [{"name": t.lower(), "shape": [rows, 2], "datatype": t, "data": to_json(a)} for t, a in arrays.items()]
    return Case({"inputs": items}, [], arrays)


@settings(max_examples=300 * SCALE)
@given(case=valid_cases(), chunk=st.sampled_from([0, 0, 7, 64]))
def test_valid_requests_in_any_encoding_round_trip_exactly(app, case, chunk):
    body, headers = case.encode()
    assert_echoes(case, decode(*app.post(INFER, body, headers, chunk)))


@settings(max_examples=1000 * SCALE)
@given(request=mutated_requests())
def test_mutated_requests_get_a_4xx_never_a_5xx(app, request, a_valid_request):
    body, headers = request
    status, _, answer = app.post(INFER, body, headers)
    assert_client_error(status, answer)


@settings(max_examples=500 * SCALE)
@given(request=random_requests, path=st.sampled_from([INFER, PREDICT]))
def test_random_bodies_and_headers_get_a_4xx_never_a_5xx(app, request, path):
    body, headers = request
    status, _, answer = app.post(path, body, headers)
    assert 400 <= status < 500, (status, answer[:300])
    assert orjson.loads(answer)["error"]


def test_the_app_still_answers_valid_requests_after_the_fuzzing(app, a_valid_request):
    body, headers = a_valid_request.encode()
    assert_echoes(a_valid_request, decode(*app.post(INFER, body, headers)))
    assert app.server.admission.in_flight == 0  # every request was released, whatever it hit


# --- a real server -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_server(tmp_path_factory, all_types_path):
    with serve(tmp_path_factory.mktemp("fuzz"), "--model-uri", str(all_types_path), "--model-name", "all") as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield server, client


def _over_http(client: httpx.Client, path: str, body: bytes, headers: list[tuple[bytes, bytes]]):
    # HTTP header values hold no control characters and no leading or trailing white space (RFC 9110
    # field-value; h11 refuses to send b" "): keep what a real client could send
    printable = [(k.decode(), v.decode("latin-1")) for k, v in headers
                 if all(32 <= c < 127 for c in v) and v == v.strip(b" \t")]
    response = client.post(path, content=body, headers=printable)
    return response.status_code, response.content


@settings(max_examples=150 * SCALE)
@given(request=mutated_requests() | random_requests)
def test_a_real_server_answers_mutated_requests_with_4xx(real_server, request):
    server, client = real_server
    status, body = _over_http(client, INFER, *request)
    assert_client_error(status, body)


@settings(max_examples=30 * SCALE)
@given(case=valid_cases())
def test_a_real_server_round_trips_valid_requests(real_server, case):
    server, client = real_server
    body, headers = case.encode()
    response = client.post(INFER, content=body, headers=[(k.decode(), v.decode()) for k, v in headers])
    headers_in = {k.encode(): v.encode() for k, v in response.headers.items()}
    assert_echoes(case, decode(response.status_code, headers_in, response.content))


def test_the_real_server_survived_the_fuzzing_without_an_unexpected_error(real_server, a_valid_request):
    server, client = real_server
    body, headers = a_valid_request.encode()
    assert client.post(INFER, content=body).status_code == 200
    assert server.process.poll() is None
    assert not [line for line in server.log_lines() if line.get("level") == "ERROR"]
