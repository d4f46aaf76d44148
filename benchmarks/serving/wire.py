"""Request and response bytes for the servers under test: Open Inference Protocol v2 JSON, the v2 binary
tensor data extension (KServe/Triton: `Inference-Header-Content-Length`), MLflow's `/invocations` JSON,
and HTTP/1.1 request framing. Pure functions of numpy arrays and bytes; nothing here opens a socket.

Binary data is little-endian and row-major without padding; BOOL is one byte per element and BYTES is
each element's 4-byte little-endian length followed by its bytes (the extension's definition).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable

import numpy as np

DATATYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16", np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.int8): "INT8", np.dtype(np.int16): "INT16", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64",
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
}
NUMPY: dict[str, np.dtype] = {v: k for k, v in DATATYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


def datatype(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "BYTES"
    return DATATYPES[array.dtype.newbyteorder("=")]


def tensor_bytes(array: np.ndarray) -> bytes:
    """One tensor's data as the binary extension carries it."""
    if datatype(array) == "BYTES":
        out = bytearray()
        for item in array.ravel():
            raw = item if isinstance(item, bytes) else str(item).encode()
            out += struct.pack("<I", len(raw)) + raw
        return bytes(out)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def from_bytes(raw: bytes, dtype_name: str, shape: list[int]) -> np.ndarray:
    """The inverse of `tensor_bytes` for one tensor."""
    if dtype_name == "BYTES":
        items, at = [], 0
        while at < len(raw):
            (n,) = struct.unpack_from("<I", raw, at)
            items.append(raw[at + 4:at + 4 + n])
            at += 4 + n
        return np.array(items, dtype=object).reshape(shape)
    return np.frombuffer(raw, dtype=NUMPY[dtype_name].newbyteorder("<")).reshape(shape)


def v2_json(inputs: dict[str, np.ndarray], outputs: Iterable[str] = ()) -> bytes:
    """A v2 inference request with the data inline, as a JSON client builds it (`array.tolist()`)."""
    body: dict = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": datatype(a), "data": a.ravel().tolist()}
                             for n, a in inputs.items()]}
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    return json.dumps(body, separators=(",", ":")).encode()


def v2_binary(inputs: dict[str, np.ndarray], outputs: Iterable[str] = (), binary_outputs: bool = True
              ) -> tuple[bytes, int]:
    """A v2 request in the binary extension: the JSON header (inputs with `binary_data_size`, outputs
    with `binary_data`), then each input's bytes in order. Returns the body and the header's length,
    which travels as `Inference-Header-Content-Length`."""
    blobs = [tensor_bytes(a) for a in inputs.values()]
    header: dict = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": datatype(a),
                                "parameters": {"binary_data_size": len(b)}}
                               for (n, a), b in zip(inputs.items(), blobs, strict=True)]}
    outputs = list(outputs)
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": binary_outputs}} for n in outputs]
    elif binary_outputs:
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(blobs), len(head)


def decode_v2(body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """The outputs of a v2 response, JSON or binary extension (then `header_length` is the value of
    its `Inference-Header-Content-Length`); binary outputs follow the header in the order listed."""
    end = len(body) if header_length is None else header_length
    header = json.loads(body[:end])
    at, out = end, {}
    for o in header["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[o["name"]] = from_bytes(body[at:at + size], o["datatype"], o["shape"])
            at += size
        else:
            dtype = object if o["datatype"] == "BYTES" else NUMPY[o["datatype"]]
            out[o["name"]] = np.asarray(o["data"], dtype=dtype).reshape(o["shape"])
    if at != len(body):
        raise ValueError(f"{len(body) - at} bytes after the last binary output")
    return out


def mlflow_json(array: np.ndarray) -> bytes:
    """`mlflow models serve`'s `/invocations` body for a tensor-signature model."""
    return json.dumps({"inputs": array.tolist()}, separators=(",", ":")).encode()


def decode_mlflow(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["predictions"], dtype=np.float32)


def http_post(port: int, path: str, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> bytes:
    """A keep-alive HTTP/1.1 POST to 127.0.0.1:port, encoded once and sent as-is by the load generator."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def v2_json_request(port: int, path: str, inputs: dict[str, np.ndarray]) -> bytes:
    return http_post(port, path, v2_json(inputs))


def v2_binary_request(port: int, path: str, inputs: dict[str, np.ndarray], outputs: Iterable[str]) -> bytes:
    body, header_length = v2_binary(inputs, outputs)
    return http_post(port, path, body, "application/octet-stream", {HEADER_LENGTH: str(header_length)})


# --- v2 gRPC messages (inference.GRPCInferenceService, grpc_predict_v2.proto) ----------------------
# Only the fields a load generator sends and reads, written with protobuf's wire format by hand so the
# benchmark needs no generated code: ModelInferRequest{1 model_name, 5 inputs, 6 outputs,
# 7 raw_input_contents}, InferInputTensor{1 name, 2 datatype, 3 shape}; ModelInferResponse{5 outputs,
# 6 raw_output_contents}, InferOutputTensor{1 name, 2 datatype, 3 shape, 5 contents}.

GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
_CONTENTS_FIELDS = {6: ("FP32", "<f4", 5), 7: ("FP64", "<f8", 1), 2: ("INT32", None, 0), 3: ("INT64", None, 0)}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message, packed repeated)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def grpc_infer_request(model: str, inputs: dict[str, np.ndarray], outputs: Iterable[str] = ()) -> bytes:
    """A serialized ModelInferRequest with the tensors in raw_input_contents, as tritonclient sends them."""
    out = bytearray(_field(1, model.encode()))
    for name, a in inputs.items():
        shape = b"".join(_varint(d) for d in a.shape)
        out += _field(5, _field(1, name.encode()) + _field(2, datatype(a).encode()) + _field(3, shape))
    for name in outputs:
        out += _field(6, _field(1, name.encode()))
    for a in inputs.values():
        out += _field(7, tensor_bytes(a))
    return bytes(out)


def grpc_infer_response(model: str, outputs: dict[str, np.ndarray]) -> bytes:
    """A serialized ModelInferResponse with the tensors in raw_output_contents (for the gRPC floor)."""
    out = bytearray(_field(1, model.encode()))
    for name, a in outputs.items():
        shape = b"".join(_varint(d) for d in a.shape)
        out += _field(5, _field(1, name.encode()) + _field(2, datatype(a).encode()) + _field(3, shape))
    for a in outputs.values():
        out += _field(6, tensor_bytes(a))
    return bytes(out)


def _read_varint(raw: bytes, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = raw[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, at


def _fields(raw: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of every field of one message, in order."""
    out, at = [], 0
    while at < len(raw):
        key, at = _read_varint(raw, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = _read_varint(raw, at)
        elif kind == 2:
            size, at = _read_varint(raw, at)
            value, at = raw[at:at + size], at + size
        elif kind in (1, 5):
            size = 8 if kind == 1 else 4
            value, at = raw[at:at + size], at + size
        else:
            raise ValueError(f"protobuf wire type {kind} not supported")
        out.append((number, kind, value))
    return out


def _varints(kind: int, value) -> list[int]:
    if kind == 0:
        return [value]
    items, at = [], 0
    while at < len(value):
        n, at = _read_varint(value, at)
        items.append(n - (1 << 64) if n >= 1 << 63 else n)
    return items


def decode_grpc_response(raw: bytes) -> dict[str, np.ndarray]:
    """The outputs of a serialized ModelInferResponse: raw_output_contents in output order, else each
    output's typed contents (fp32, fp64, int32, int64)."""
    fields = _fields(raw)
    blobs = [v for n, _, v in fields if n == 6]
    out = {}
    for i, message in enumerate(v for n, _, v in fields if n == 5):
        name, dtype_name, shape, contents = "", "", [], None
        for number, kind, value in _fields(message):
            if number == 1:
                name = value.decode()
            elif number == 2:
                dtype_name = value.decode()
            elif number == 3:
                shape += _varints(kind, value)
            elif number == 5:
                contents = value
        if i < len(blobs):
            out[name] = from_bytes(blobs[i], dtype_name, shape)
        elif contents is not None:
            out[name] = _typed_contents(contents, shape)
    return out


def _typed_contents(contents: bytes, shape: list[int]) -> np.ndarray:
    for number, kind, value in _fields(contents):
        if number in _CONTENTS_FIELDS:
            name, fixed, wire_type = _CONTENTS_FIELDS[number]
            if fixed and kind == 2:
                return np.frombuffer(value, dtype=fixed).reshape(shape)
            if not fixed:
                return np.asarray(_varints(kind, value), dtype=NUMPY[name]).reshape(shape)
    raise ValueError("no raw_output_contents and no supported typed contents")
