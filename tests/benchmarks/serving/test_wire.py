import json
import struct

import numpy as np
import pytest

from benchmarks.serving import wire


def test_binary_request_is_the_json_header_then_little_endian_row_major_tensor_bytes():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    body, header_length = wire.v2_binary({"input": x}, ["probabilities"])
    header = json.loads(body[:header_length])
    assert header == {
        "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    assert body[header_length:] == struct.pack("<4f", 1, 2, 3, 4)


def test_binary_request_without_named_outputs_asks_for_every_output_in_binary():
    body, n = wire.v2_binary({"a": np.zeros(1, np.int64)})
    assert json.loads(body[:n])["parameters"] == {"binary_data_output": True}


def test_binary_inputs_follow_the_header_in_the_order_the_header_lists_them():
    a, b = np.array([1], np.int32), np.array([True, False])
    body, n = wire.v2_binary({"a": a, "b": b})
    assert [i["name"] for i in json.loads(body[:n])["inputs"]] == ["a", "b"]
    assert body[n:] == struct.pack("<i", 1) + b"\x01\x00"  # BOOL: one byte per element


def test_big_endian_arrays_are_sent_little_endian():
    x = np.array([1.5], dtype=">f4")
    assert wire.tensor_bytes(x) == struct.pack("<f", 1.5)


def test_bytes_elements_are_each_prefixed_with_a_4_byte_little_endian_length():
    x = np.array([b"ab", b"c"], dtype=object)
    assert wire.tensor_bytes(x) == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert list(wire.from_bytes(wire.tensor_bytes(x), "BYTES", [2])) == [b"ab", b"c"]


def test_a_binary_response_decodes_with_binary_and_json_outputs_mixed():
    p = np.array([[0.25, 0.75]], np.float32)
    header = json.dumps({"outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
    ]}).encode()
    out = wire.decode_v2(header + p.tobytes(), len(header))
    np.testing.assert_array_equal(out["probabilities"], p)
    assert out["label"].tolist() == [1]


def test_a_json_response_decodes_without_a_header_length():
    body = b'{"outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[0.5,0.5]}]}'
    assert wire.decode_v2(body)["y"].shape == (1, 2)


def test_bytes_left_after_the_last_binary_output_are_an_error():
    header = b'{"outputs":[{"name":"y","datatype":"INT8","shape":[1],"parameters":{"binary_data_size":1}}]}'
    with pytest.raises(ValueError, match="after the last binary output"):
        wire.decode_v2(header + b"\x01\x02", len(header))


def test_json_request_carries_the_data_flat_with_shape_and_datatype():
    body = json.loads(wire.v2_json({"input": np.arange(6, dtype=np.float32).reshape(2, 3)}))
    assert body == {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
                                "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}]}


def test_binary_http_request_declares_the_header_length_and_the_whole_body_length():
    raw = wire.v2_binary_request(8080, "/v2/models/m/infer", {"input": np.zeros((1, 2), np.float32)}, ["y"])
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    n = int(headers["Inference-Header-Content-Length"])
    assert json.loads(body[:n])["inputs"][0]["parameters"]["binary_data_size"] == len(body) - n == 8


# Bytes serialized by tritonclient 2.73's service_pb2 (protobuf 6.33) for the same messages.
TRITON_REQUEST = bytes.fromhex(
    "0a036d6c702a110a05696e7075741204465033321a020203320f0a0d70726f626162696c69746965733a18"
    "000000000000803f0000004000004040000080400000a040")
TRITON_TYPED_RESPONSE = bytes.fromhex(
    "0a036d6c702a190a01701204465033321a0201022a0a32080000003f0000803e2a1c0a016c1205494e5436341a01022a0d1a0bff"
    "ffffffffffffffff0107")


def test_grpc_request_is_byte_for_byte_what_tritonclient_serializes():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert wire.grpc_infer_request("mlp", {"input": x}, ["probabilities"]) == TRITON_REQUEST


def test_grpc_response_outputs_decode_from_raw_output_contents():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    output = wire._field(1, b"y") + wire._field(2, b"FP32") + wire._field(3, bytes([2, 3]))
    raw = wire._field(1, b"mlp") + wire._field(5, output) + wire._field(6, x.tobytes())
    np.testing.assert_array_equal(wire.decode_grpc_response(raw)["y"], x)


def test_grpc_response_outputs_decode_from_typed_contents_with_negative_int64():
    out = wire.decode_grpc_response(TRITON_TYPED_RESPONSE)
    np.testing.assert_array_equal(out["p"], np.array([[0.5, 0.25]], np.float32))
    assert out["l"].tolist() == [-1, 7]


def test_a_serialized_grpc_response_decodes_to_its_outputs():
    p = np.array([[0.25, 0.75]], np.float32)
    out = wire.decode_grpc_response(wire.grpc_infer_response("mlp", {"probabilities": p}))
    np.testing.assert_array_equal(out["probabilities"], p)
