"""Open Inference Protocol v2 and KServe v1 REST shapes: parsing, validation and response bodies, and the
checks and raw tensor encoding that the gRPC protocol (`grpc_protocol`) shares with them.

Pure functions over JSON-shaped data and numpy arrays; nothing here knows about HTTP or onnxruntime.
Every rejection is an `InvalidInput` naming the field, what was expected and what came.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelops_inference.errors import InvalidInput

# v2 datatype names and the numpy dtypes they travel as.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_V2: dict[np.dtype, str] = {v: k for k, v in V2_TO_NUMPY.items()}
# numpy kinds of JSON-decoded data that may be cast to a datatype of the given kind without losing meaning.
_ACCEPTED_KINDS = {"b": "b", "i": "biu", "u": "biu", "f": "biuf", "O": "OUS"}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the v2 metadata endpoint describes it; -1 marks a free dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return V2_TO_NUMPY[self.datatype]

    @property
    def batched(self) -> bool:
        """True when the first dimension is free, so requests can be stacked along it."""
        return len(self.shape) > 0 and self.shape[0] == -1

    def describe(self) -> str:
        return f"{self.datatype} {list(self.shape)}"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class InferRequest:
    """A validated v2 request: arrays keyed by input name, in the model's dtypes and shapes."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0]


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"request body is not valid JSON: {e}") from None


def _kind_name(kind: str) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings",
            "S": "strings", "O": "mixed or nested values"}.get(kind, kind)


def to_array(data: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """JSON data (flat or nested) as an array of `spec`'s dtype, rejecting values of the wrong kind."""
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{where}: data is not a regular array of {spec.datatype} values ({e})") from None
    want = spec.dtype
    if raw.dtype.kind not in _ACCEPTED_KINDS[want.kind] and raw.size:
        raise InvalidInput(
            f"{where}: datatype {spec.datatype} expects {_kind_name(want.kind)}, "
            f"got {_kind_name(raw.dtype.kind)} (e.g. {raw.ravel()[0]!r})"
        )
    if raw.dtype == want:
        return raw
    try:
        return raw.astype(want)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInput(f"{where}: cannot convert data to {spec.datatype} ({e})") from None


def check_shape(shape: tuple[int, ...], spec: TensorSpec, where: str) -> None:
    """Rank and fixed dimensions must match; the batch dimension must hold at least one row."""
    expected = list(spec.shape)
    if len(shape) != len(expected) or any(e not in (-1, s) for e, s in zip(expected, shape, strict=True)):
        raise InvalidInput(f"{where}: shape {expected} expected (-1: any size), got {list(shape)}")
    if any(s == 0 for s in shape):
        raise InvalidInput(f"{where}: empty batch, shape {list(shape)}; send at least one row")


def check_header(name: Any, datatype: Any, shape: Any, index: int,
                 specs: dict[str, TensorSpec]) -> tuple[TensorSpec, tuple[int, ...]]:
    """What every wire format (JSON data, gRPC contents, raw bytes) checks before it reads a tensor's data:
    a known input name, the model's datatype and a shape the model accepts. Returns the input's spec and
    the shape, so the caller can size the data before decoding any of it."""
    where = f"inputs[{index}]"
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name: expected a string, got {_type(name)}")
    spec = specs.get(name)
    if spec is None:
        raise InvalidInput(f"{where}.name: unknown input '{name}'; model inputs are {sorted(specs)}")
    where = f"input '{name}'"
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise InvalidInput(f"{where}.shape: expected a list of non-negative integers, got {shape!r}")
    if datatype != spec.datatype:
        known = "" if isinstance(datatype, str) and datatype in V2_TO_NUMPY else " (not a v2 datatype)"
        raise InvalidInput(f"{where}.datatype: {spec.datatype} expected, got {datatype!r}{known}")
    check_shape(tuple(shape), spec, where + ".shape")
    return spec, tuple(shape)


def check_count(got: int, shape: tuple[int, ...], where: str, unit: str = "values") -> None:
    """The data holds exactly as many values (or bytes) as the shape needs. Compared before an array of
    that size exists, so a huge declared shape costs nothing."""
    count = math.prod(shape)
    if got != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} {unit}, got {got}")


def _v2_input(item: Any, index: int, specs: dict[str, TensorSpec]) -> tuple[str, np.ndarray]:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected an object with name, shape, datatype, data; got {_type(item)}")
    for key in ("name", "shape", "datatype", "data"):
        if key not in item:
            raise InvalidInput(f"{where}: missing field '{key}'")
    spec, shape = check_header(item["name"], item["datatype"], item["shape"], index, specs)
    where = f"input '{spec.name}'"
    array = to_array(item["data"], spec, where + ".data")
    check_count(array.size, shape, where + ".data")
    return spec.name, array.reshape(shape)


def parse_v2_request(payload: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> InferRequest:
    """Validates a v2 inference request body against the model's input and output specs."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"request body: expected a JSON object, got {_type(payload)}")
    items = payload.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"inputs: expected a non-empty list of tensors, got {_brief(items)}")
    specs = {s.name: s for s in inputs}
    arrays = gather_inputs((_v2_input(item, i, specs) for i, item in enumerate(items)), inputs)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"id: expected a string, got {_type(request_id)}")
    return InferRequest(
        inputs=arrays,
        id=request_id,
        outputs=requested_outputs(payload.get("outputs"), outputs),
        parameters=payload.get("parameters") or {},
    )


def gather_inputs(parsed: Iterable[tuple[str, np.ndarray]], inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Each input once, none missing, all with the same rows: the request-level checks of every wire format,
    over its (name, array) pairs in request order (consumed lazily, so errors come in that order)."""
    arrays: dict[str, np.ndarray] = {}
    for i, (name, array) in enumerate(parsed):
        if name in arrays:
            raise InvalidInput(f"inputs[{i}].name: input '{name}' given twice")
        arrays[name] = array
    missing = [s for s in inputs if s.name not in arrays]
    if missing:
        raise InvalidInput("inputs: missing " + ", ".join(f"'{s.name}' ({s.describe()})" for s in missing))
    _check_same_rows(arrays, inputs)
    return arrays


def _check_same_rows(arrays: dict[str, np.ndarray], specs: list[TensorSpec]) -> None:
    rows = {name: a.shape[0] for name, a in arrays.items() if a.ndim}
    if len(set(rows.values())) > 1 and all(s.batched for s in specs):
        raise InvalidInput(f"inputs: every input needs the same number of rows, got {rows}")


def requested_outputs(requested: Any, outputs: list[TensorSpec]) -> list[str] | None:
    """The outputs a request selects by name (None: every output), each one the model has."""
    if requested is None:
        return None
    known = [o.name for o in outputs]
    if not isinstance(requested, list):
        raise InvalidInput(f"outputs: expected a list of {{\"name\": ...}} objects, got {_type(requested)}")
    names = []
    for i, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise InvalidInput(f"outputs[{i}].name: one of {known} expected, got {_brief(name)}")
        names.append(name)
    return names


def parse_v1_request(payload: Any, inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """KServe v1 `{"instances": [...]}` (or `"inputs"`): one row per instance, a dict per row for
    models with several inputs."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"request body: expected a JSON object, got {_type(payload)}")
    key = "instances" if "instances" in payload else "inputs"
    rows = payload.get(key)
    if not isinstance(rows, list):
        raise InvalidInput(f"instances: expected a list of rows, got {_brief(rows)}")
    if not rows:
        raise InvalidInput("instances: empty batch; send at least one row")
    if len(inputs) == 1 and not isinstance(rows[0], dict):
        columns = {inputs[0].name: rows}
    else:
        names = [s.name for s in inputs]
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or sorted(row) != sorted(names):
                raise InvalidInput(f"instances[{i}]: expected an object with keys {names}, got {_brief(row)}")
        columns = {n: [row[n] for row in rows] for n in names}
    arrays = {}
    for spec in inputs:
        where = f"instances (input '{spec.name}')"
        array = to_array(columns[spec.name], spec, where)
        check_shape(array.shape, spec, where + " shape")
        arrays[spec.name] = array
    return arrays


def v2_response(model_name: str, model_version: str, request: InferRequest,
                outputs: dict[str, np.ndarray]) -> bytes:
    body: dict[str, Any] = {"model_name": model_name}
    if model_version:
        body["model_version"] = model_version
    if request.id is not None:
        body["id"] = request.id
    names = request.outputs if request.outputs is not None else list(outputs)
    body["outputs"] = [tensor_json(n, outputs[n]) for n in names]
    return dumps(body)


def tensor_json(name: str, array: np.ndarray) -> dict[str, Any]:
    """One output tensor, its data flattened row-major (numpy arrays are encoded by `dumps`)."""
    datatype = datatype_of(array)
    if datatype == "BYTES":
        data: Any = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
    else:
        data = np.ascontiguousarray(array).ravel()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def v1_response(outputs: dict[str, np.ndarray]) -> bytes:
    if len(outputs) == 1:
        return dumps({"predictions": np.ascontiguousarray(next(iter(outputs.values())))})
    columns = {name: a.tolist() for name, a in outputs.items()}
    rows = len(next(iter(columns.values())))
    return dumps({"predictions": [{n: c[i] for n, c in columns.items()} for i in range(rows)]})


def error_body(message: str) -> bytes:
    return dumps({"error": message})


def dumps(body: Any) -> bytes:
    """Compact JSON; numpy arrays are written natively (float32 as its shortest repr, NaN as null)."""
    return orjson.dumps(body, default=_tolist, option=orjson.OPT_SERIALIZE_NUMPY)


def _tolist(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()  # dtypes orjson does not write natively
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _brief(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- raw tensor bytes: gRPC's raw_input_contents / raw_output_contents (the HTTP binary tensor data
# extension uses the same encoding): elements row-major and little-endian, BOOL one byte each, BYTES each
# element as a 4-byte little-endian length and then its bytes.

def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype an output array travels as (strings and objects as BYTES)."""
    return NUMPY_TO_V2.get(array.dtype, "BYTES")


def decode_raw(buffer: bytes, spec: TensorSpec, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Raw bytes as an array of `spec`'s dtype and `shape`; the byte length is checked before decoding."""
    if spec.datatype == "BYTES":
        return text_array(split_bytes(buffer, shape, where), where).reshape(shape)
    need = math.prod(shape) * spec.dtype.itemsize
    if len(buffer) != need:
        raise InvalidInput(f"{where}: shape {list(shape)} of {spec.datatype} needs {need} bytes "
                           f"({spec.dtype.itemsize} per value), got {len(buffer)}")
    if spec.datatype == "BOOL":
        return (np.frombuffer(buffer, np.uint8) != 0).reshape(shape)
    return np.frombuffer(buffer, spec.dtype.newbyteorder("<")).astype(spec.dtype, copy=False).reshape(shape)


def split_bytes(buffer: bytes, shape: tuple[int, ...], where: str) -> list[bytes]:
    """The elements of a raw BYTES tensor, exactly as many as `shape` needs. Each length prefix is checked
    against what is left, so a truncated or lying prefix is an error rather than a read past the end."""
    count, size = math.prod(shape), len(buffer)
    items: list[bytes] = []
    offset = 0
    while offset < size and len(items) <= count:
        if offset + 4 > size:
            raise InvalidInput(f"{where}: BYTES element {len(items)} has a truncated length prefix "
                               f"({size - offset} of 4 bytes)")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if length > size - offset:
            raise InvalidInput(f"{where}: BYTES element {len(items)} declares {length} bytes, "
                               f"only {size - offset} follow")
        items.append(buffer[offset:offset + length])
        offset += length
    if len(items) != count or offset != size:
        got = f"more than {count}" if len(items) > count else str(len(items))
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} BYTES elements, got {got}")
    return items


def text_array(items: list[bytes], where: str) -> np.ndarray:
    """BYTES elements as the object array of str onnxruntime's string tensors take (UTF-8 only)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        try:
            array[i] = item.decode()
        except UnicodeDecodeError as e:
            raise InvalidInput(f"{where}: BYTES element {i} is not UTF-8 text ({e.reason} at byte {e.start}); "
                               "the model's string tensors hold text") from None
    return array


def encode_raw(array: np.ndarray) -> bytes:
    """An array as raw bytes, the inverse of `decode_raw`."""
    if datatype_of(array) == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts += (struct.pack("<I", len(data)), data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
