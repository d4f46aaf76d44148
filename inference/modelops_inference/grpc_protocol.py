"""The Open Inference Protocol v2 over gRPC: its messages, and ModelInferRequest/ModelInferResponse to and
from the arrays the runner takes.

Pure functions over protobuf messages and numpy arrays, the gRPC twin of `protocol`: the checks both
wires share (input names, datatypes, shapes, value counts, duplicates, missing inputs, requested outputs)
and the raw tensor encoding come from there, so an input is rejected with the same words over either.

The messages are built from `grpc_descriptor` (compiled from grpc_predict_v2.proto) in a descriptor pool
of this module's own: protobuf's process-wide pool would clash with tritonclient's identical names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from modelops_inference.errors import InvalidInput
from modelops_inference.grpc_descriptor import SERIALIZED
from modelops_inference.protocol import (
    InferRequest,
    TensorSpec,
    check_count,
    check_header,
    datatype_of,
    decode_raw,
    encode_raw,
    gather_inputs,
    requested_outputs,
    text_array,
)

SERVICE = "inference.GRPCInferenceService"

_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(SERIALIZED))


def _message(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest = _message("ServerLiveRequest")
ServerLiveResponse = _message("ServerLiveResponse")
ServerReadyRequest = _message("ServerReadyRequest")
ServerReadyResponse = _message("ServerReadyResponse")
ModelReadyRequest = _message("ModelReadyRequest")
ModelReadyResponse = _message("ModelReadyResponse")
ServerMetadataRequest = _message("ServerMetadataRequest")
ServerMetadataResponse = _message("ServerMetadataResponse")
ModelMetadataRequest = _message("ModelMetadataRequest")
ModelMetadataResponse = _message("ModelMetadataResponse")
ModelInferRequest = _message("ModelInferRequest")
ModelInferResponse = _message("ModelInferResponse")
InferTensorContents = _message("InferTensorContents")

# The typed contents field of each datatype and the dtype its values travel in (INT8/INT16 ride in
# int32, UINT8/UINT16 in uint32). FP16 has none: it travels only as raw bytes.
CONTENTS_FIELDS: dict[str, tuple[str, np.dtype | None]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", None),
}
# Triton's shared-memory extension names the region in an input's parameters; its data is not in the request.
SHARED_MEMORY_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def parse_message(cls: type[Message], data: bytes) -> Message:
    """`data` as a `cls` message; bytes that are not one are the client's error, not the server's."""
    try:
        return cls.FromString(data)
    except DecodeError as e:
        raise InvalidInput(f"request is not a valid {cls.DESCRIPTOR.full_name} message: {e}") from None


def parameters(entries) -> dict[str, Any]:
    """A request's (or tensor's) `parameters` map as plain values, the shape HTTP's JSON parameters have."""
    values = {}
    for key, parameter in entries.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def parse_infer_request(message: Message, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> InferRequest:
    """Validates a ModelInferRequest against the model's input and output specs. Each input's data is
    either in its typed `contents` or in the request's `raw_input_contents` (one entry per input), never
    both; sizes are checked against the shape before anything is decoded."""
    if not message.inputs:
        raise InvalidInput("inputs: expected a non-empty list of tensors, got none")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(f"raw_input_contents: {len(raw)} entries for {len(message.inputs)} inputs; "
                           "send one per input, in the order of inputs")
    specs = {s.name: s for s in inputs}
    arrays = gather_inputs(
        (_input(tensor, i, specs, raw[i] if raw else None) for i, tensor in enumerate(message.inputs)), inputs)
    for i, output in enumerate(message.outputs):
        if "classification" in output.parameters:
            raise InvalidInput(f"outputs[{i}].parameters: classification is not supported; request the output "
                               "itself and take its top classes")
    requested = [{"name": o.name} for o in message.outputs] if message.outputs else None
    names, _ = requested_outputs(requested, outputs)
    return InferRequest(
        inputs=arrays,
        id=message.id or None,
        outputs=names,
        parameters=parameters(message.parameters),
    )


def _input(tensor: Message, index: int, specs: dict[str, TensorSpec], raw: bytes | None) -> tuple[str, np.ndarray]:
    spec, shape = check_header(tensor.name, tensor.datatype, list(tensor.shape), index, specs)
    where = f"input '{spec.name}'"
    shared = [key for key in SHARED_MEMORY_PARAMETERS if key in tensor.parameters]
    if shared:
        raise InvalidInput(f"{where}.parameters: {shared[0]}: shared memory is not supported; send the data "
                           "in contents or raw_input_contents")
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    if raw is not None:
        if filled:
            raise InvalidInput(f"{where}.contents: the request carries raw_input_contents, so no input may also "
                               f"set contents (got {filled[0]}); send every input's data one way")
        return spec.name, decode_raw(raw, spec, shape, f"{where} (raw_input_contents[{index}])")
    return spec.name, contents_array(tensor.contents, filled, spec, shape, where + ".contents")


def contents_array(contents: Message, filled: list[str], spec: TensorSpec, shape: tuple[int, ...],
                   where: str) -> np.ndarray:
    """Typed contents as an array of `spec`'s dtype and `shape`: the datatype's own field only, with as many
    values as the shape needs, each within the datatype's range."""
    if spec.datatype not in CONTENTS_FIELDS:
        raise InvalidInput(f"{where}: {spec.datatype} has no typed contents field; send it in raw_input_contents")
    name, wire = CONTENTS_FIELDS[spec.datatype]
    others = [f for f in filled if f != name]
    if others:
        raise InvalidInput(f"{where}: {spec.datatype} values go in {name}, got {', '.join(others)}")
    if not filled:
        raise InvalidInput(f"{where}: no data; send the values in contents.{name} or in raw_input_contents")
    values = getattr(contents, name)
    check_count(len(values), shape, f"{where}.{name}")
    if wire is None:
        return text_array(list(values), f"{where}.{name}").reshape(shape)
    array = np.array(values, dtype=wire)
    if spec.dtype != wire:
        info = np.iinfo(spec.dtype)
        outside = np.flatnonzero((array < info.min) | (array > info.max))
        if outside.size:
            i = int(outside[0])
            raise InvalidInput(f"{where}.{name}: value {array[i]} (element {i}) is out of range for "
                               f"{spec.datatype} ({info.min}..{info.max})")
    return array.astype(spec.dtype, copy=False).reshape(shape)


def infer_response(model_name: str, model_version: str, request: InferRequest, outputs: dict[str, np.ndarray],
                   raw: bool) -> Message:
    """The ModelInferResponse for `request`'s selected outputs. Raw output contents answer raw input
    contents, as v2 clients that send raw (tritonclient) read only raw; typed contents answer typed ones,
    for clients that build messages by hand. FP16 has no typed field, so a model with an FP16 output
    always answers raw."""
    names = request.outputs if request.outputs is not None else list(outputs)
    arrays = [(name, outputs[name]) for name in names]
    raw = raw or any(datatype_of(a) not in CONTENTS_FIELDS for _, a in arrays)
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=request.id or "")
    for name, array in arrays:
        tensor = response.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
        if raw:
            response.raw_output_contents.append(encode_raw(array))
        else:
            _fill_contents(tensor.contents, array)
    return response


def _fill_contents(contents: Message, array: np.ndarray) -> None:
    name, _ = CONTENTS_FIELDS[datatype_of(array)]
    values = array.ravel().tolist()
    if name == "bytes_contents":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    getattr(contents, name).extend(values)


def model_metadata(name: str, version: str, platform: str, inputs: list[TensorSpec],
                   outputs: list[TensorSpec]) -> Message:
    response = ModelMetadataResponse(name=name, versions=[version] if version else [], platform=platform)
    for specs, field in ((inputs, response.inputs), (outputs, response.outputs)):
        for spec in specs:
            field.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    return response
