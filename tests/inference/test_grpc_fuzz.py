"""Property-based fuzzing of gRPC request parsing: random, mutated and byte-corrupted ModelInferRequests
sent to real listeners serving a model with an input of every v2 datatype (raw contents) and one of every
datatype but FP16 (typed contents too) get an answer or a client-error status (never INTERNAL or UNKNOWN,
never a hang), and the server answers a valid request after each one.

Deterministic (derandomized, no example database) and bounded: a few hundred examples per property."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops_inference import grpc_protocol as wire
from modelops_inference.tensors import V2_TO_NUMPY, to_raw

from . import models
from .conftest import grpc_serving
from .test_grpc_protocol import all_types_request

# What a request the client got wrong may be answered with; anything else is a server bug.
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE,
                 grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
NAMES = [d.lower() for d in models.V2_TO_ONNX]
DATATYPE_NAMES = [*V2_TO_NUMPY, "FLOAT", "fp32", "", "INT128"]
FIELDS = [f.name for f in wire.InferTensorContents.DESCRIPTOR.fields]
FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def target(all_types_path, typed_types_path):
    """Channels by encoding: "raw" to the model of every datatype, "typed" to the one without FP16."""
    with (grpc_serving(model_uri=str(all_types_path), model_name="every") as raw,
          grpc_serving(model_uri=str(typed_types_path), model_name="every") as typed,
          grpc.insecure_channel(raw.target) as raw_channel, grpc.insecure_channel(typed.target) as typed_channel):
        yield {True: raw_channel, False: typed_channel}


def send(channel, data: bytes, timeout: float = 10):
    """One call with the request's bytes as they are; returns (code, details)."""
    stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    try:
        return grpc.StatusCode.OK, wire.ModelInferResponse.FromString(stub(data, timeout=timeout))
    except grpc.RpcError as e:
        return e.code(), e.details()


def valid_request(rows: int = 2, raw: bool = True, seed: int = 0):
    """A request the raw (every datatype) or typed (no FP16) model answers, and the arrays it sends."""
    arrays = models.all_types_rows(rows, seed, tuple(models.V2_TO_ONNX) if raw else models.TYPED_DATATYPES)
    return all_types_request(arrays, raw, wire.ModelInferRequest, id="valid"), arrays


def answered(response) -> dict[str, np.ndarray]:
    """Each output of a response as an array, from raw or typed contents."""
    if response.raw_output_contents:
        return {t.name: raw for t, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
    out = {}
    for tensor in response.outputs:
        field, _ = wire.CONTENTS_FIELDS[tensor.datatype]
        values = list(getattr(tensor.contents, field))
        out[tensor.name] = bytes(to_raw(np.array([v.decode() for v in values], dtype=object)
                                        if tensor.datatype == "BYTES" else
                                        np.array(values, dtype=V2_TO_NUMPY[tensor.datatype])))
    return out


def assert_answers(channel, raw: bool, rows: int = 1) -> None:
    message, arrays = valid_request(rows=rows, raw=raw, seed=1)
    code, response = send(channel, message.SerializeToString())
    assert code == grpc.StatusCode.OK, response
    assert response.id == "valid" and bool(response.raw_output_contents) is raw
    out = answered(response)
    for name, array in arrays.items():
        assert out[f"{name}_out"] == bytes(to_raw(array)), name


def check(target, raw: bool, data: bytes) -> None:
    code, details = send(target[raw], data)
    assert code == grpc.StatusCode.OK or code in CLIENT_ERRORS, f"{code}: {details}"
    if code in CLIENT_ERRORS:
        assert details, "an error without a message"
    assert_answers(target[raw], raw)


shapes = st.lists(st.one_of(st.integers(-3, 4), st.sampled_from([2**31, 2**40, 2**62, 2**63 - 1])), max_size=4)
values = {
    "bool_contents": st.lists(st.booleans(), max_size=8),
    "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
    "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    "uint_contents": st.lists(st.integers(0, 2**32 - 1), max_size=8),
    "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=8),
    "fp32_contents": st.lists(st.floats(width=32), max_size=8),
    "fp64_contents": st.lists(st.floats(), max_size=8),
    "bytes_contents": st.lists(st.binary(max_size=6), max_size=8),
}


@st.composite
def mutated_requests(draw) -> tuple[bool, bytes]:
    """A valid request with one to four things wrong with it, of the kinds clients get wrong."""
    raw = draw(st.booleans())
    message, _ = valid_request(draw(st.integers(1, 3)), raw, seed=draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(1, 4))):
        tensor = message.inputs[draw(st.integers(0, len(message.inputs) - 1))] if message.inputs else None
        kind = draw(st.sampled_from(["datatype", "shape", "drop", "duplicate", "rename", "raw_bytes", "raw_count",
                                     "contents", "contents", "prefix", "prefix", "text", "text", "model",
                                     "outputs", "shared_memory"]))
        if tensor is None:
            break
        if kind == "model":
            message.model_name = draw(st.sampled_from(["", "every", "mlp", "évery"]))
            message.model_version = draw(st.sampled_from(["", "1"]))
        elif kind == "datatype":
            tensor.datatype = draw(st.sampled_from(DATATYPE_NAMES))
        elif kind == "shape":
            tensor.ClearField("shape")
            tensor.shape.extend(draw(shapes))
        elif kind == "drop":
            index = list(message.inputs).index(tensor)
            del message.inputs[index]
            if message.raw_input_contents and draw(st.booleans()):
                del message.raw_input_contents[min(index, len(message.raw_input_contents) - 1)]
        elif kind == "duplicate":
            message.inputs.append(tensor)
        elif kind == "rename":
            tensor.name = draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)))
        elif kind == "raw_bytes" and message.raw_input_contents:
            i = draw(st.integers(0, len(message.raw_input_contents) - 1))
            data = message.raw_input_contents[i]
            cut = draw(st.integers(0, len(data)))
            message.raw_input_contents[i] = draw(st.sampled_from([data[:cut], data + draw(st.binary(max_size=9)),
                                                                  draw(st.binary(max_size=40))]))
        elif kind == "raw_count":
            if message.raw_input_contents and draw(st.booleans()):
                message.raw_input_contents.pop()
            else:
                message.raw_input_contents.append(draw(st.binary(max_size=16)))
        elif kind == "contents":
            field = draw(st.sampled_from(FIELDS))
            getattr(tensor.contents, field).extend(draw(values[field]))
        elif kind == "prefix" and message.raw_input_contents:
            i = NAMES.index("bytes")
            if i < len(message.raw_input_contents):
                data = message.raw_input_contents[i]
                length = draw(st.sampled_from([0, 1, 5, 2**31, 2**32 - 1]))
                message.raw_input_contents[i] = struct.pack("<I", length) + data[4:draw(st.integers(4, len(data)))]
        elif kind == "text":
            _replace_text(message, raw, draw(st.integers(0, 5)), draw(st.binary(max_size=6)))
        elif kind == "outputs":
            message.outputs.add(name=draw(st.sampled_from(["fp32_out", "bytes_out", "nope", ""])))
        elif kind == "shared_memory":
            tensor.parameters["shared_memory_region"].string_param = "r0"
    return raw, message.SerializeToString()


def _replace_text(message, raw: bool, element: int, value: bytes) -> None:
    """One element of the BYTES input (if still there and that long) becomes `value`, well framed."""
    names = [t.name for t in message.inputs]
    if "bytes" not in names:
        return
    i = names.index("bytes")
    if not raw:
        items = message.inputs[i].contents.bytes_contents
        if element < len(items):
            items[element] = value
    elif i < len(message.raw_input_contents):
        data, items, offset = message.raw_input_contents[i], [], 0
        while offset + 4 <= len(data):
            (length,) = struct.unpack_from("<I", data, offset)
            items.append(data[offset + 4:offset + 4 + length])
            offset += 4 + length
        if element < len(items):
            items[element] = value
        message.raw_input_contents[i] = b"".join(struct.pack("<I", len(x)) + x for x in items)


@st.composite
def random_requests(draw) -> tuple[bool, bytes]:
    """Requests with nothing right by construction: random names, datatypes, shapes, contents and raw."""
    message = wire.ModelInferRequest(model_name=draw(st.sampled_from(["every"] * 8 + ["", "x"])),
                                     id=draw(st.text(max_size=4)))
    for _ in range(draw(st.integers(0, 5))):
        tensor = message.inputs.add(name=draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=5))),
                                    datatype=draw(st.sampled_from(DATATYPE_NAMES)), shape=draw(shapes))
        for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
            getattr(tensor.contents, field).extend(draw(values[field]))
    message.raw_input_contents.extend(draw(st.lists(st.binary(max_size=48), max_size=5)))
    for key in draw(st.lists(st.text(max_size=4), max_size=2)):
        message.parameters[key].int64_param = draw(st.integers(-5, 5))
    return draw(st.booleans()), message.SerializeToString()


@st.composite
def corrupted_bytes(draw) -> tuple[bool, bytes]:
    """A valid request's serialized bytes, truncated, with bytes flipped, or with garbage spliced in."""
    raw = draw(st.booleans())
    message, _ = valid_request(draw(st.integers(1, 2)), raw)
    data = bytearray(message.SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        how = draw(st.sampled_from(["flip", "cut", "splice"]))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return raw, bytes(data)


def test_the_untouched_requests_are_answered_exactly(target):
    for raw in (True, False):
        assert_answers(target[raw], raw, rows=3)


@FUZZ
@given(case=mutated_requests())
def test_mutated_requests_get_client_errors_and_the_server_keeps_serving(target, case):
    check(target, *case)


@FUZZ
@given(case=random_requests())
def test_random_requests_get_client_errors_and_the_server_keeps_serving(target, case):
    check(target, *case)


@FUZZ
@given(case=corrupted_bytes())
def test_corrupted_bytes_get_client_errors_and_the_server_keeps_serving(target, case):
    check(target, *case)
