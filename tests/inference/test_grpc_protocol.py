"""The v2 gRPC messages: wire-compatible with tritonclient's, every datatype in and out through typed
contents and raw bytes, and every malformed ModelInferRequest an InvalidInput in the words HTTP uses."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as triton

from modelops_inference import grpc_descriptor
from modelops_inference import grpc_protocol as wire
from modelops_inference.errors import InvalidInput
from modelops_inference.protocol import TensorSpec, parse_v2_request
from modelops_inference.tensors import to_raw

from . import models

MLP_IN = [TensorSpec("input", "FP32", (-1, 4))]
MLP_OUT = [TensorSpec("probabilities", "FP32", (-1, 3))]
EVERY_IN = [TensorSpec(d.lower(), d, (-1, 2)) for d in models.V2_TO_ONNX]
EVERY_OUT = [TensorSpec(f"{d.lower()}_out", d, (-1, 2)) for d in models.V2_TO_ONNX]

_hack = importlib.util.spec_from_file_location("grpc_descriptor_hack",
                                               Path(__file__).parents[2] / "hack" / "grpc_descriptor.py")
generator = importlib.util.module_from_spec(_hack)
_hack.loader.exec_module(generator)


def mlp_request(rows=2, **fields) -> triton.ModelInferRequest:
    """Built with tritonclient's own classes, then sent as bytes: what a Triton client puts on the wire."""
    message = triton.ModelInferRequest(model_name="mlp", **fields)
    tensor = message.inputs.add(name="input", datatype="FP32", shape=[rows, 4])
    tensor.contents.fp32_contents.extend(range(rows * 4))
    return message


def parse(message, inputs=MLP_IN, outputs=MLP_OUT):
    return wire.parse_infer_request(wire.parse_message(wire.ModelInferRequest, message.SerializeToString()),
                                    inputs, outputs)


def rejects(match: str, message, inputs=MLP_IN):
    with pytest.raises(InvalidInput, match=match):
        parse(message, inputs)


def all_types_request(arrays: dict[str, np.ndarray], raw: bool, message_class=triton.ModelInferRequest,
                      **fields) -> Message:
    """A request to `models.all_types` sending `arrays` (by input name) as raw bytes or typed contents, built
    with `message_class` (tritonclient's by default, or `grpc_protocol`'s)."""
    message = message_class(model_name="every", **fields)
    for name, array in arrays.items():
        datatype = name.upper()
        tensor = message.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            message.raw_input_contents.append(bytes(to_raw(array)))
        else:
            field, _ = wire.CONTENTS_FIELDS[datatype]
            values = array.ravel().tolist()
            getattr(tensor.contents, field).extend([v.encode() for v in values] if datatype == "BYTES" else values)
    return message


# --- the wire contract ------------------------------------------------------------------------------

def _fields(descriptor):
    return {f.name: (f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else None)
            for f in descriptor.fields}


def _nested(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _nested(nested)


def test_every_message_and_method_matches_tritonclients_on_the_wire():
    ours = wire.ModelInferRequest.DESCRIPTOR.file
    theirs = triton.DESCRIPTOR
    assert ours.package == theirs.package == "inference"
    for message in ours.message_types_by_name.values():
        for descriptor in _nested(message):
            other = theirs.pool.FindMessageTypeByName(descriptor.full_name)
            assert _fields(descriptor) == _fields(other), descriptor.full_name
    service, their_service = ours.services_by_name["GRPCInferenceService"], theirs.services_by_name[
        "GRPCInferenceService"]
    for method in service.methods:
        other = their_service.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name, other.output_type.full_name)
    assert [m.name for m in service.methods] == ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                                 "ModelMetadata", "ModelInfer"]


def test_the_compiled_descriptor_is_generated_from_the_proto():
    assert generator.OUTPUT.read_text() == generator.render(), "stale: run `make inference-proto`"
    assert grpc_descriptor.SERIALIZED == generator.compile_proto()


def test_bytes_that_are_not_the_message_are_invalid_input_naming_it():
    with pytest.raises(InvalidInput, match=r"request is not a valid inference.ModelInferRequest message"):
        wire.parse_message(wire.ModelInferRequest, b"\x0a\xff\xff\xff")


# --- requests in -----------------------------------------------------------------------------------

def test_typed_contents_become_the_models_array_with_id_parameters_and_outputs():
    message = mlp_request(id="r-1")
    message.parameters["priority"].uint64_param = 3
    message.parameters["label"].string_param = "a"
    message.parameters["scale"].double_param = 0.5
    message.outputs.add(name="probabilities")
    request = parse(message)
    array = request.inputs["input"]
    assert array.dtype == np.float32 and array.shape == (2, 4) and array[1].tolist() == [4, 5, 6, 7]
    assert (request.id, request.outputs) == ("r-1", ["probabilities"])
    assert request.parameters == {"priority": 3, "label": "a", "scale": 0.5}


def test_no_id_and_no_outputs_mean_none():
    request = parse(mlp_request())
    assert (request.id, request.outputs, request.parameters) == (None, None, {})


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "contents"])
def test_every_datatype_arrives_intact(raw):
    arrays = models.all_types_rows(3, datatypes=tuple(models.V2_TO_ONNX) if raw else models.TYPED_DATATYPES)
    inputs = [s for s in EVERY_IN if s.name in arrays]
    request = parse(all_types_request(arrays, raw), inputs, EVERY_OUT)
    for name, want in arrays.items():
        got = request.inputs[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tolist() == want.tolist(), name


def test_raw_bool_bytes_are_0_or_1_as_over_http():
    flags = [TensorSpec("flag", "BOOL", (-1, 2))]
    message = triton.ModelInferRequest(model_name="b", raw_input_contents=[b"\x00\x01\x01\x00"])
    message.inputs.add(name="flag", datatype="BOOL", shape=[2, 2])
    assert parse(message, flags).inputs["flag"].tolist() == [[False, True], [True, False]]
    message.raw_input_contents[0] = b"\x00\x01\x07\x00"
    rejects(r"input 'flag' \(raw_input_contents\[0\]\): BOOL element 2 is byte 7; BOOL elements are one byte each, "
            r"0 or 1", message, flags)


def test_the_shared_checks_reject_with_the_same_words_as_http():
    json_body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": list(range(6))}]}
    with pytest.raises(InvalidInput) as over_http:
        parse_v2_request(json_body, MLP_IN, MLP_OUT)
    message = triton.ModelInferRequest(model_name="mlp")
    message.inputs.add(name="input", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(range(6))
    with pytest.raises(InvalidInput) as over_grpc:
        parse(message)
    assert str(over_grpc.value) == str(over_http.value) == (
        "input 'input'.shape: shape [-1, 4] expected (-1: any size), got [2, 3]")


def _tensor(message, name="input", datatype="FP32", shape=(2, 4)):
    return message.inputs.add(name=name, datatype=datatype, shape=shape)


def _raw(*parts: bytes, shape=(2, 4), datatype="FP32", name="input"):
    message = triton.ModelInferRequest(model_name="m", raw_input_contents=list(parts))
    _tensor(message, name, datatype, shape)
    return message


def _bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


TEXT = [TensorSpec("text", "BYTES", (-1,))]
SMALL_INT = [TensorSpec("code", "INT8", (-1,))]
HALF = [TensorSpec("half", "FP16", (-1,))]


def _contents(name, datatype, field, values, shape):
    message = triton.ModelInferRequest(model_name="m")
    getattr(_tensor(message, name, datatype, shape).contents, field).extend(values)
    return message


@pytest.mark.parametrize(
    ("message", "inputs", "match"),
    [
        (triton.ModelInferRequest(model_name="m"), MLP_IN, r"inputs: expected a non-empty list of tensors, got none"),
        (_contents("pixels", "FP32", "fp32_contents", [0] * 8, (2, 4)), MLP_IN,
         r"inputs\[0\].name: unknown input 'pixels'; model inputs are \['input'\]"),
        (_contents("input", "FP64", "fp64_contents", [0] * 8, (2, 4)), MLP_IN,
         r"input 'input'.datatype: FP32 expected, got 'FP64'"),
        (_contents("input", "FLOAT", "fp32_contents", [0] * 8, (2, 4)), MLP_IN,
         r"FP32 expected, got 'FLOAT' \(not a v2 datatype"),
        (_contents("input", "FP32", "fp32_contents", [0] * 8, (2, -4)), MLP_IN,
         r"input 'input'.shape: expected a list of non-negative integers, got \[2, -4\]"),
        (_contents("input", "FP32", "fp32_contents", [0] * 8, (8,)), MLP_IN,
         r"input 'input'.shape: shape \[-1, 4\] expected \(-1: any size\), got \[8\]"),
        (_contents("input", "FP32", "fp32_contents", [], (0, 4)), MLP_IN, r"empty batch, shape \[0, 4\]"),
        (_contents("input", "FP32", "fp32_contents", [0] * 7, (2, 4)), MLP_IN,
         r"input 'input'.contents.fp32_contents: shape \[2, 4\] needs 8 values, got 7"),
        (_contents("input", "FP32", "int_contents", [0] * 8, (2, 4)), MLP_IN,
         r"input 'input'.contents: FP32 values go in fp32_contents, got int_contents"),
        (_contents("input", "FP32", "fp32_contents", [], (2, 4)), MLP_IN,
         r"input 'input'.contents: no data; send the values in contents.fp32_contents or in raw_input_contents"),
        (_contents("code", "INT8", "int_contents", [1, 300], (2,)), SMALL_INT,
         r"input 'code'.contents.int_contents: 300 is out of range for INT8 \[-128, 127\]"),
        (_contents("half", "FP16", "fp32_contents", [1.0], (1,)), HALF,
         r"input 'half'.contents: FP16 has no typed contents field; send it in raw_input_contents"),
        (_contents("text", "BYTES", "bytes_contents", [b"ok", b"\xff"], (2,)), TEXT,
         r"input 'text'.contents.bytes_contents: BYTES element 1 is not UTF-8 text"),
        (_raw(b"\0" * 28), MLP_IN,
         r"input 'input' \(raw_input_contents\[0\]\): binary data is 28 bytes; shape \[2, 4\] of FP32 needs 32 "
         r"\(8 elements of 4 bytes\)"),
        (_raw(b"\0" * 32, b"\0" * 32), MLP_IN,
         r"raw_input_contents: 2 entries for 1 inputs; send one per input, in the order of inputs"),
        (_raw(b"\0" * 32, shape=(2**62, 4)), MLP_IN,
         rf"shape \[{2**62}, 4\] of FP32 needs {2**64 * 4} "),
        (_raw(_bytes_elements(b"a") + b"\x05\x00", name="text", datatype="BYTES", shape=(2,)), TEXT,
         r"input 'text' \(raw_input_contents\[0\]\): 2 BYTES elements need at least 8 bytes \(a 4-byte length "
         r"each\); binary data is 7 bytes"),
        (_raw(_bytes_elements(b"ab", b"") + b"\x05\x00", name="text", datatype="BYTES", shape=(3,)), TEXT,
         r"BYTES element 2: its 4-byte length is cut off at byte 10 of 12"),
        (_raw(_bytes_elements(b"a") + struct.pack("<I", 2**31) + b"xy", name="text", datatype="BYTES", shape=(2,)),
         TEXT, r"BYTES element 1 declares 2147483648 bytes at byte 5, but only 2 remain"),
        (_raw(_bytes_elements(b"a", b"b", b"c"), name="text", datatype="BYTES", shape=(2,)), TEXT,
         r"binary data is 15 bytes, but its 2 BYTES elements end at byte 10"),
        (_raw(_bytes_elements(b"a"), name="text", datatype="BYTES", shape=(2**60,)), TEXT,
         rf"{2**60} BYTES elements need at least {2**62} bytes"),
        (_raw(_bytes_elements(b"a", b"\xc3"), name="text", datatype="BYTES", shape=(2,)), TEXT,
         r"BYTES element 1 is not UTF-8 text"),
    ],
)
def test_malformed_requests_are_rejected_naming_the_input_and_what_the_model_accepts(message, inputs, match):
    rejects(match, message, inputs)


def test_raw_and_typed_contents_cannot_be_mixed():
    message = _raw(b"\0" * 32)
    message.inputs[0].contents.fp32_contents.extend([0] * 8)
    rejects(r"input 'input'.contents: the request carries raw_input_contents, so no input may also set contents "
            r"\(got fp32_contents\)", message)


def test_request_level_checks_are_the_shared_ones():
    twice = mlp_request()
    twice.inputs.append(twice.inputs[0])
    rejects(r"inputs\[1\].name: input 'input' given twice", twice)
    two = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "FP32", (-1, 2))]
    missing = _contents("a", "FP32", "fp32_contents", [0] * 4, (2, 2))
    rejects(r"inputs: missing 'b' \(FP32 \[-1, 2\]\)", missing, two)
    unknown_output = mlp_request()
    unknown_output.outputs.add(name="logits")
    rejects(r"outputs\[0\].name: one of \['probabilities'\] expected, got \"logits\"", unknown_output)


def test_tritons_classification_extension_is_refused_rather_than_ignored():
    message = mlp_request()
    message.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    rejects(r"output 'probabilities'.parameters.classification: the classification extension is not supported",
            message)


def test_unsupported_extensions_parameters_are_refused_at_request_level_too():
    message = mlp_request()
    message.parameters["shared_memory_region"].string_param = "region0"
    rejects(r"request.parameters.shared_memory_region: the shared-memory extension is not supported", message)


def test_triton_shared_memory_inputs_are_refused_with_the_alternative():
    message = mlp_request()
    message.inputs[0].contents.Clear()
    message.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    rejects(r"input 'input'.parameters.shared_memory_region: the shared-memory extension is not supported by this "
            r"server; send the tensor data in the request", message)


# --- responses out ---------------------------------------------------------------------------------

def _read(response) -> triton.ModelInferResponse:
    return triton.ModelInferResponse.FromString(response.SerializeToString())


def test_raw_requests_get_raw_outputs_and_typed_requests_typed_ones():
    request = parse(mlp_request(id="x"))
    outputs = {"probabilities": np.full((2, 3), 0.25, np.float32)}
    typed = _read(wire.infer_response("mlp", "3", request, outputs, raw=False))
    assert (typed.model_name, typed.model_version, typed.id) == ("mlp", "3", "x")
    [tensor] = typed.outputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("probabilities", "FP32", [2, 3])
    assert list(tensor.contents.fp32_contents) == [0.25] * 6 and not typed.raw_output_contents
    raw = _read(wire.infer_response("mlp", "3", request, outputs, raw=True))
    assert not raw.outputs[0].HasField("contents")
    assert np.frombuffer(raw.raw_output_contents[0], "<f4").tolist() == [0.25] * 6


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "contents"])
def test_every_datatype_leaves_intact(raw):
    arrays = {f"{name}_out": a for name, a in models.all_types_rows(2).items()}
    request = parse(mlp_request())
    response = _read(wire.infer_response("every", "", request, arrays, raw=raw))
    # FP16 has no typed field, so a model with an FP16 output answers raw whatever the request used
    assert len(response.raw_output_contents) == len(arrays)
    for tensor, encoded, (name, want) in zip(response.outputs, response.raw_output_contents, arrays.items(),
                                             strict=True):
        assert (tensor.name, tensor.datatype, list(tensor.shape)) == (name, name.removesuffix("_out").upper(), [2, 2])
        assert encoded == bytes(to_raw(want))


def test_typed_outputs_of_every_datatype_but_fp16():
    arrays = {f"{name}_out": a for name, a in models.all_types_rows(2, datatypes=models.TYPED_DATATYPES).items()}
    response = _read(wire.infer_response("every", "", parse(mlp_request()), arrays, raw=False))
    assert not response.raw_output_contents
    for tensor, (name, want) in zip(response.outputs, arrays.items(), strict=True):
        field, _ = wire.CONTENTS_FIELDS[tensor.datatype]
        values = list(getattr(tensor.contents, field))
        expected = [v.encode() for v in want.ravel().tolist()] if tensor.datatype == "BYTES" else want.ravel().tolist()
        assert values == expected, name


def test_requested_outputs_are_the_only_ones_answered():
    request = parse(mlp_request(), [TensorSpec("input", "FP32", (-1, 4))],
                    [TensorSpec("a", "FP32", (-1, 1)), TensorSpec("b", "FP32", (-1, 1))])
    request.outputs = ["b"]
    response = _read(wire.infer_response("m", "", request, {"a": np.zeros((2, 1), np.float32),
                                                            "b": np.ones((2, 1), np.float32)}, raw=False))
    assert [t.name for t in response.outputs] == ["b"]


def test_model_metadata_lists_the_specs():
    response = wire.model_metadata("mlp", "3", "onnxruntime_onnx", MLP_IN, MLP_OUT)
    theirs = triton.ModelMetadataResponse.FromString(response.SerializeToString())
    assert (theirs.name, list(theirs.versions), theirs.platform) == ("mlp", ["3"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in theirs.inputs] == [("input", "FP32", [-1, 4])]
    assert list(wire.model_metadata("mlp", "", "p", MLP_IN, MLP_OUT).versions) == []
