"""Tensor encodings: every v2 datatype round-trips through JSON and raw bytes, values a datatype cannot
hold are refused instead of wrapped, lying sizes and truncated BYTES are InvalidInput, and non-finite
floats have a JSON spelling."""

from __future__ import annotations

import math
import struct

import numpy as np
import orjson
import pytest

from modelops_inference.errors import InvalidInput
from modelops_inference.tensors import (
    V2_TO_NUMPY,
    check_datatype,
    from_json,
    from_raw,
    to_json,
    to_json_nested,
    to_raw,
)

from . import models

DATATYPES = list(V2_TO_NUMPY)


def json_round_trip(array: np.ndarray) -> list:
    return orjson.loads(orjson.dumps(to_json(array), option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_through_raw_bytes(datatype):
    array = models.sample(datatype, 3)
    back = from_raw(bytes(to_raw(array)), datatype, [3, 2], "x")
    assert back.dtype == V2_TO_NUMPY[datatype] and back.shape == (3, 2)
    assert back.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_through_json(datatype):
    array = models.sample(datatype, 3)
    back = from_json(json_round_trip(array), datatype, "x").reshape(3, 2)
    assert back.dtype == V2_TO_NUMPY[datatype]
    assert back.tolist() == array.tolist()


def test_raw_layout_is_little_endian_row_major_bool_one_byte_bytes_length_prefixed():
    assert bytes(to_raw(np.array([[1, 2]], np.int16))) == b"\x01\x00\x02\x00"
    assert bytes(to_raw(np.array([True, False]))) == b"\x01\x00"
    assert bytes(to_raw(np.array(["ab", "é"], dtype=object))) == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"
    assert bytes(to_raw(np.zeros((0, 2), np.float32))) == b""


def test_raw_input_at_an_odd_offset_is_read_correctly():
    body = b"x" + struct.pack("<3f", 1.5, -2.0, 3.25)
    array = from_raw(memoryview(body)[1:], "FP32", [3], "x")
    assert array.tolist() == [1.5, -2.0, 3.25] and array.flags.aligned


@pytest.mark.parametrize(
    ("buffer", "datatype", "shape", "match"),
    [
        (b"\x00" * 7, "FP32", [2], r"x: binary data is 7 bytes; shape \[2\] of FP32 needs 8 \(2 elements of 4"),
        (b"\x00" * 9, "FP32", [2], r"is 9 bytes; shape \[2\] of FP32 needs 8"),
        (b"", "INT64", [1], r"is 0 bytes; shape \[1\] of INT64 needs 8"),
        (b"\x01\x02", "BOOL", [2], r"BOOL element 1 is byte 2; BOOL elements are one byte each, 0 or 1"),
        (b"\x01\x00\x00", "BYTES", [1], r"1 BYTES elements need at least 4 bytes"),
        (b"\x05\x00\x00\x00abc", "BYTES", [1], r"BYTES element 0 declares 5 bytes at byte 0, but only 3 remain"),
        (b"\x01\x00\x00\x00a\x01\x00", "BYTES", [2], r"2 BYTES elements need at least 8 bytes"),
        (b"\x01\x00\x00\x00a\x01\x00\x00", "BYTES", [2], r"BYTES element 1: its 4-byte length is cut off at byte 5"),
        (b"\x01\x00\x00\x00ab", "BYTES", [1], r"binary data is 6 bytes, but its 1 BYTES elements end at byte 5"),
        (b"\xff\xff\xff\xff", "BYTES", [1], r"declares 4294967295 bytes at byte 0, but only 0 remain"),
        (b"\x02\x00\x00\x00\xff\xfe", "BYTES", [1], r"BYTES element 0 is not UTF-8 text \(invalid start byte"),
        (b"\x00" * 8, "BYTES", [10**12], r"1000000000000 BYTES elements need at least 4000000000000 bytes"),
        (b"\x00" * 8, "FP32", [10**12, 10**12], r"needs 4000000000000000000000000"),
    ],
)
def test_lying_or_truncated_raw_data_is_invalid_input(buffer, datatype, shape, match):
    with pytest.raises(InvalidInput, match=match):
        from_raw(buffer, datatype, shape, "x")


@pytest.mark.parametrize(
    ("data", "datatype", "match"),
    [
        ([300], "UINT8", r"x: 300 is out of range for UINT8 \[0, 255\]"),
        ([-1], "UINT64", r"-1 is out of range for UINT64"),
        ([2**63], "INT64", r"9223372036854775808 is out of range for INT64"),
        ([-129, 0], "INT8", r"-129 is out of range for INT8 \[-128, 127\]"),
        ([1e39], "FP32", r"1e\+39 is out of range for FP32"),
        ([70000], "FP16", r"70000 is out of range for FP16"),
        ([-(2**63), 1], "FP16", r"-9223372036854775808 is out of range for FP16"),
        ([1.5], "INT32", r"datatype INT32 expects integers, got numbers \(e.g. 1.5\)"),
        ([1], "BOOL", r"datatype BOOL expects booleans, got integers"),
        (["a", 1], "BYTES", r"datatype BYTES expects strings, got int \(e.g. 1\)"),
        ([["a"], ["b", "c"]], "BYTES", r"datatype BYTES expects strings, got list"),
        (["a"], "FP32", r"datatype FP32 expects numbers, got strings \(e.g. 'a'\); the only strings taken are"),
        ([1.0, "nan"], "FP64", r"expects numbers, got strings \(e.g. 'nan'\)"),
        ([1.0, None], "FP64", r"expects numbers, got mixed or nested values \(e.g. None\)"),
        ([1e39, "NaN"], "FP32", r"1e\+39 is out of range for FP32"),
        ([{"a": 1}], "INT64", r"datatype INT64 expects integers, got mixed or nested values"),
    ],
)
def test_json_values_the_datatype_cannot_hold_are_refused_not_wrapped(data, datatype, match):
    with pytest.raises(InvalidInput, match=match):
        from_json(data, datatype, "x")


@pytest.mark.parametrize("datatype", ["FP16", "FP32"])
def test_the_largest_finite_value_survives_json_and_the_next_rounding_step_is_out_of_range(datatype):
    dtype = V2_TO_NUMPY[datatype]
    biggest = np.array([np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    assert from_json(json_round_trip(biggest), datatype, "x").tolist() == biggest.tolist()
    step = float(np.finfo(dtype).max) - float(np.nextafter(np.finfo(dtype).max, dtype.type(0)))
    over = float(np.finfo(dtype).max) + step / 2
    with pytest.raises(InvalidInput, match=f"is out of range for {datatype}"):
        from_json([over], datatype, "x")


def test_non_finite_floats_are_json_strings_both_ways():
    array = np.array([0.5, math.nan, math.inf, -math.inf], np.float32)
    assert json_round_trip(array) == [0.5, "NaN", "Infinity", "-Infinity"]
    back = from_json([0.5, "NaN", "Infinity", "-Infinity"], "FP32", "x")
    assert back.dtype == np.float32 and back[0] == 0.5 and math.isnan(back[1])
    assert back[2:].tolist() == [math.inf, -math.inf]
    nested = to_json_nested(np.array([[1.0, math.nan]], np.float64))
    assert nested == [[1.0, "NaN"]]


def test_finite_json_output_stays_a_numpy_array_for_orjson_to_write_natively():
    out = to_json(np.array([[0.1, 0.2]], np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY) == b"[0.1,0.2]"


def test_a_datatype_other_than_the_models_names_what_the_model_takes():
    check_datatype("FP32", "FP32", "input 'x'.datatype")
    with pytest.raises(InvalidInput, match=r"input 'x'.datatype: FP32 expected, got 'INT32'; the model takes only"):
        check_datatype("INT32", "FP32", "input 'x'.datatype")
    with pytest.raises(InvalidInput, match=r"FP32 expected, got 'BF16' \(not a v2 datatype: the v2 datatypes are "
                                           r"BOOL, UINT8, .*, BYTES\)"):
        check_datatype("BF16", "FP32", "input 'x'.datatype")
    with pytest.raises(InvalidInput, match=r"got \['FP32'\] \(not a v2 datatype"):
        check_datatype(["FP32"], "FP32", "input 'x'.datatype")
