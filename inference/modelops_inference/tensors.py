"""Tensor data in the Open Inference Protocol's two encodings: JSON values, and raw little-endian bytes
(the binary tensor data extension over HTTP; gRPC's `raw_input_contents` uses the same layout).

Pure functions between those encodings and numpy arrays, for every v2 datatype. Every rejection is an
`InvalidInput` naming where (`where`), what was expected and what came; nothing here knows which front
end called it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

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
_ACCEPTED_KINDS = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}
# JSON has no NaN or infinity: they travel as these strings, as in protobuf's JSON mapping.
NONFINITE_JSON = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_LENGTH = struct.Struct("<I")  # the length prefix of each BYTES element in raw form
# For the float datatypes narrower than JSON's float64 numbers, the magnitude from which a number rounds
# to infinity: the largest finite value plus half a step (the shortest text of FP32's maximum, 3.4028235e38,
# is itself a little above it and must still be read as the maximum).
_FLOAT_LIMITS = {np.dtype(t): 1.5 * float(np.finfo(t).max) - 0.5 * float(np.nextafter(np.finfo(t).max, t(0)))
                 for t in (np.float16, np.float32)}


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype an output array travels as (strings and objects as BYTES)."""
    return NUMPY_TO_V2.get(array.dtype, "BYTES")


def check_datatype(datatype: Any, expected: str, where: str) -> None:
    """A tensor's datatype must be the one the model declares: onnxruntime casts nothing itself."""
    if datatype == expected:
        return
    if isinstance(datatype, str) and datatype in V2_TO_NUMPY:
        raise InvalidInput(f"{where}: {expected} expected, got {datatype!r}; the model takes only {expected} "
                           "here (onnxruntime converts nothing)")
    raise InvalidInput(f"{where}: {expected} expected, got {_show(datatype)} (not a v2 datatype: the v2 "
                       f"datatypes are {', '.join(V2_TO_NUMPY)})")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- JSON --------------------------------------------------------------------------------------------

def _kind_name(kind: str) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings",
            "S": "strings", "O": "mixed or nested values"}.get(kind, kind)


def from_json(data: Any, datatype: str, where: str) -> np.ndarray:
    """JSON data (flat or nested) as an array of `datatype`, refusing values of the wrong kind and values
    the datatype cannot hold (300 as UINT8, 1e39 as FP32) instead of letting numpy wrap or overflow."""
    want = V2_TO_NUMPY[datatype]
    if want.kind == "O":
        return _strings_from_json(data, where)
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{where}: data is not a regular array of {datatype} values ({e})") from None
    if raw.dtype == want:
        return raw
    kind = raw.dtype.kind
    if not raw.size:
        return raw.astype(want)
    if kind not in _ACCEPTED_KINDS[want.kind]:
        if want.kind == "f" and kind in "UO":
            return _floats_from_json(data, want, datatype, where)
        if want.kind in "iu" and kind in "fO":  # numpy turns [0, 2**64 - 1] into floats: read the ints
            return _ints_from_json(data, want, datatype, where)
        raise InvalidInput(f"{where}: datatype {datatype} expects {_kind_name(want.kind)}, "
                           f"got {_kind_name(kind)} (e.g. {raw.ravel()[:1].tolist()[0]!r})")
    if want.kind in "iu" and kind in "iu":
        check_int_range(raw, want, datatype, where)
    elif want.kind == "f" and want in _FLOAT_LIMITS:
        _check_float_range(raw, want, datatype, where)
    return raw.astype(want)


def _check_float_range(raw: np.ndarray, want: np.dtype, datatype: str, where: str) -> None:
    """Refuses numbers beyond `want`'s largest finite value before casting (a cast would turn them into
    infinities, which JSON cannot even express). Arithmetic that can overflow (a sum of squares) is
    avoided: it warns, and under `-W error` a warning is an exception."""
    if raw.dtype.kind != "f" and want.itemsize > 2:  # every int64 and uint64 fits in FP32's range
        return
    limit = _FLOAT_LIMITS[want]
    flat = raw.ravel() if raw.dtype.kind == "f" else raw.ravel().astype(np.float64)  # abs(int64 min) wraps
    magnitudes = np.abs(flat)
    if np.maximum.reduce(magnitudes) >= limit:  # ndarray.max() without its Python wrapper: once per request
        value = raw.ravel()[np.flatnonzero(magnitudes >= limit)[0]].item()  # as sent
        raise InvalidInput(f"{where}: {value!r} is out of range for {datatype}")


def check_int_range(raw: np.ndarray, want: np.dtype, datatype: str, where: str) -> None:
    """Integers must fit `want` before they are cast to it (numpy would wrap 300 to 44 as UINT8)."""
    info = np.iinfo(want)
    low, high = raw.min(), raw.max()
    if low < info.min or high > info.max:
        value = low if low < info.min else high
        raise InvalidInput(f"{where}: {int(value)} is out of range for {datatype} [{info.min}, {info.max}]")


def _ints_from_json(data: Any, want: np.dtype, datatype: str, where: str) -> np.ndarray:
    """Integers as JSON gave them, when numpy would have read them as floats (a list spanning int64 and
    uint64) or objects; anything that is not an integer is refused as before."""
    raw = np.asarray(data, dtype=object)
    info = np.iinfo(want)
    for v in raw.flat:
        if not isinstance(v, int):
            got = "numbers" if isinstance(v, float) else _kind_name("O")
            raise InvalidInput(f"{where}: datatype {datatype} expects integers, got {got} (e.g. {v!r})")
        if not info.min <= v <= info.max:
            raise InvalidInput(f"{where}: {v} is out of range for {datatype} [{info.min}, {info.max}]")
    return raw.astype(want)


def _floats_from_json(data: Any, want: np.dtype, datatype: str, where: str) -> np.ndarray:
    """Numbers mixed with the strings "NaN", "Infinity" and "-Infinity" (what the server writes for them).
    Read from the JSON values, not numpy's view of them, which turns every number of a mixed list into
    a string."""
    try:
        raw = np.asarray(data, dtype=object)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{where}: data is not a regular array of {datatype} values ({e})") from None
    values = np.empty(raw.size, np.float64)
    for i, v in enumerate(raw.flat):
        if isinstance(v, str) and v in NONFINITE_JSON:
            values[i] = NONFINITE_JSON[v]
        elif isinstance(v, int | float):
            values[i] = v
        else:
            shown = "strings" if isinstance(v, str) else _kind_name("O")
            raise InvalidInput(f"{where}: datatype {datatype} expects numbers, got {shown} (e.g. {v!r}); the "
                               "only strings taken are \"NaN\", \"Infinity\" and \"-Infinity\"")
    with np.errstate(over="ignore"):  # checked just below
        out = values.astype(want)
    overflow = np.isinf(out) & np.isfinite(values)
    if overflow.any():
        raise InvalidInput(f"{where}: {float(values[np.flatnonzero(overflow)[0]])!r} is out of range for {datatype}")
    return out.reshape(raw.shape)


def _strings_from_json(data: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(data, dtype=object)
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{where}: data is not a regular array of BYTES values ({e})") from None
    for v in array.flat:
        if not isinstance(v, str):
            raise InvalidInput(f"{where}: datatype BYTES expects strings, got {type(v).__name__} (e.g. {v!r})")
    return array


def to_json(array: np.ndarray) -> Any:
    """One output's data for a v2 JSON response, flattened row-major: a numpy array (encoded natively by
    orjson) unless it holds strings or non-finite floats, which become "NaN", "Infinity", "-Infinity"."""
    kind = array.dtype.kind
    if kind in "OUS":
        return [_text(v) for v in array.ravel().tolist()]
    flat = np.ascontiguousarray(array).ravel()
    if kind == "f" and not np.logical_and.reduce(np.isfinite(flat)):  # .all() without its Python wrapper
        return [_nonfinite_name(v) if not math.isfinite(v) else v for v in flat]
    return flat


def to_json_nested(array: np.ndarray) -> Any:
    """An output as nested JSON rows (KServe v1 predictions), non-finite floats spelt as in `to_json`."""
    kind = array.dtype.kind
    if kind in "OUS":
        return np.asarray(np.frompyfunc(_text, 1, 1)(array), dtype=object).tolist()
    if kind == "f" and not np.isfinite(array).all():
        values = array.astype(object)
        mask = ~np.isfinite(array)
        values[mask] = [_nonfinite_name(v) for v in array[mask]]
        return values.tolist()
    return np.ascontiguousarray(array)


def _nonfinite_name(value: float) -> str:
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --- raw bytes ---------------------------------------------------------------------------------------

def from_raw(buffer: bytes | memoryview, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """Raw tensor bytes (little-endian, row-major, no padding; BOOL one byte 0 or 1; BYTES a 4-byte
    little-endian length before each element) as an array of `shape`, checking every length first so a
    lying size can neither over-read nor allocate more than the body holds."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _strings_from_raw(buffer, count, where).reshape(shape)
    want = V2_TO_NUMPY[datatype]
    need = count * want.itemsize
    if len(buffer) != need:
        raise InvalidInput(f"{where}: binary data is {len(buffer)} bytes; shape {shape} of {datatype} needs "
                           f"{need} ({count} elements of {want.itemsize} bytes)")
    if datatype == "BOOL":
        raw = np.frombuffer(buffer, np.uint8)
        bad = np.flatnonzero(raw > 1)
        if bad.size:
            raise InvalidInput(f"{where}: BOOL element {int(bad[0])} is byte {int(raw[bad[0]])}; "
                               "BOOL elements are one byte each, 0 or 1")
        return raw.astype(np.bool_).reshape(shape)
    array = np.frombuffer(buffer, want.newbyteorder("<"))
    if array.dtype != want or not array.flags.aligned:  # big-endian host, or an odd offset in the body
        array = array.astype(want)
    return array.reshape(shape)


def _strings_from_raw(buffer: bytes | memoryview, count: int, where: str) -> np.ndarray:
    size = len(buffer)
    if count * _LENGTH.size > size:
        raise InvalidInput(f"{where}: {count} BYTES elements need at least {count * _LENGTH.size} bytes (a "
                           f"4-byte length each); binary data is {size} bytes")
    view = memoryview(buffer)
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > size:
            raise InvalidInput(f"{where}: BYTES element {i}: its 4-byte length is cut off at byte {offset} of "
                               f"{size}")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if length > size - offset:
            raise InvalidInput(f"{where}: BYTES element {i} declares {length} bytes at byte {offset - 4}, but "
                               f"only {size - offset} remain")
        out[i] = _text_of(view[offset:offset + length], i, where)
        offset += length
    if offset != size:
        raise InvalidInput(f"{where}: binary data is {size} bytes, but its {count} BYTES elements end at "
                           f"byte {offset}")
    return out


def _text_of(data: bytes | memoryview, i: int, where: str) -> str:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{where}: BYTES element {i} is not UTF-8 text ({e.reason} at its byte "
                           f"{e.start}); onnxruntime string tensors hold UTF-8") from None


def from_bytes_elements(items: Sequence[bytes], where: str) -> np.ndarray:
    """BYTES elements already split apart (gRPC's `bytes_contents`) as the flat object array of str that
    onnxruntime's string tensors take, refusing any that is not UTF-8 as `from_raw` does."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = _text_of(item, i, where)
    return out


def to_bytes_elements(array: np.ndarray) -> list[bytes]:
    """A BYTES output's elements, row-major, each as UTF-8 bytes (the inverse of `from_bytes_elements`)."""
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel().tolist()]


def to_raw(array: np.ndarray) -> bytes | memoryview:
    """An output in raw form (the inverse of `from_raw`); a view of the array's memory when it can be."""
    if array.dtype.kind in "OUS":
        return b"".join(part for data in to_bytes_elements(array) for part in (_LENGTH.pack(len(data)), data))
    if not array.size:
        return b""
    little = array.dtype.newbyteorder("<")
    return memoryview(np.ascontiguousarray(array, dtype=little)).cast("B")
