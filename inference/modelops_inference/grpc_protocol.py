"""The Open Inference Protocol v2 over gRPC: its messages, and ModelInferRequest/ModelInferResponse to and
from the arrays the runner takes.

Pure functions over protobuf messages and numpy arrays, the gRPC twin of `protocol`: the checks both
wires share (input names, datatypes, shapes, value counts, duplicates, missing inputs, requested outputs,
parameters of unsupported extensions) come from there and the tensor encodings (raw bytes, BYTES elements,
integer ranges) from `tensors`, so an input is rejected with the same words over either.

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
    check_parameters,
    gather_inputs,
    requested_outputs,
)
from modelops_inference.tensors import (
    check_int_range,
    datatype_of,
    from_bytes_elements,
    from_raw,
    to_bytes_elements,
    to_raw,
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
    requested = ([{"name": o.name, "parameters": parameters(o.parameters)} for o in message.outputs]
                 if message.outputs else None)
    names, _ = requested_outputs(requested, outputs)  # binary_data choices belong to HTTP's extension
    return InferRequest(
        inputs=arrays,
        id=message.id or None,
        outputs=names,
        parameters=check_parameters(parameters(message.parameters), "request"),
    )


def _input(tensor: Message, index: int, specs: dict[str, TensorSpec], raw: bytes | None) -> tuple[str, np.ndarray]:
    spec, shape = check_header(tensor.name, tensor.datatype, list(tensor.shape), index, specs)
    where = f"input '{spec.name}'"
    check_parameters(parameters(tensor.parameters), where)
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    if raw is not None:
        if filled:
            raise InvalidInput(f"{where}.contents: the request carries raw_input_contents, so no input may also "
                               f"set contents (got {filled[0]}); send every input's data one way")
        return spec.name, from_raw(raw, spec.datatype, shape, f"{where} (raw_input_contents[{index}])")
    return spec.name, contents_array(tensor.contents, filled, spec, shape, where + ".contents")


def contents_array(contents: Message, filled: list[str], spec: TensorSpec, shape: list[int],
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
        return from_bytes_elements(values, f"{where}.{name}").reshape(shape)
    array = np.array(values, dtype=wire)
    if spec.dtype != wire:
        check_int_range(array, spec.dtype, spec.datatype, f"{where}.{name}")
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
            response.raw_output_contents.append(bytes(to_raw(array)))  # protobuf takes bytes, not views
        else:
            _fill_contents(tensor.contents, array)
    return response


def _fill_contents(contents: Message, array: np.ndarray) -> None:
    name, _ = CONTENTS_FIELDS[datatype_of(array)]
    values = to_bytes_elements(array) if name == "bytes_contents" else array.ravel().tolist()
    getattr(contents, name).extend(values)


def model_metadata(name: str, version: str, platform: str, inputs: list[TensorSpec],
                   outputs: list[TensorSpec]) -> Message:
    response = ModelMetadataResponse(name=name, versions=[version] if version else [], platform=platform)
    for specs, field in ((inputs, response.inputs), (outputs, response.outputs)):
        for spec in specs:
            field.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    return response
