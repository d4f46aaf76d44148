"""Protocol shapes: v2 and v1 requests parse into the model's arrays, and every malformed request is
an InvalidInput naming the field, what was expected and what came."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelops_inference.errors import InvalidInput
from modelops_inference.protocol import (
    InferRequest,
    TensorSpec,
    parse_json,
    parse_v1_request,
    parse_v2_request,
    split_binary_body,
    v1_response,
    v2_response,
)

INPUTS = [TensorSpec("input", "FP32", (-1, 4))]
OUTPUTS = [TensorSpec("probabilities", "FP32", (-1, 3))]


def tensor(**overrides):
    t = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}
    t.update(overrides)
    return t


def v2(*tensors, **fields):
    return parse_v2_request({"inputs": list(tensors) or [tensor()], **fields}, INPUTS, OUTPUTS)


def rejects(match: str, payload, inputs=INPUTS):
    with pytest.raises(InvalidInput, match=match):
        parse_v2_request(payload, inputs, OUTPUTS)


def test_flat_data_is_reshaped_row_major_to_the_declared_shape():
    request = v2()
    array = request.inputs["input"]
    assert array.dtype == np.float32 and array.shape == (2, 4)
    assert array[1].tolist() == [4, 5, 6, 7]
    assert request.rows == 2


def test_nested_data_is_accepted():
    assert v2(tensor(data=[[0, 1, 2, 3], [4, 5, 6, 7]])).inputs["input"][1, 0] == 4


def test_request_id_parameters_and_requested_outputs_are_kept():
    request = v2(id="abc", parameters={"x": 1}, outputs=[{"name": "probabilities"}])
    assert (request.id, request.parameters, request.outputs) == ("abc", {"x": 1}, ["probabilities"])


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ([], r"request body: expected a JSON object, got a list"),
        ({}, r"inputs: expected a non-empty list of tensors, got null"),
        ({"inputs": []}, r"inputs: expected a non-empty list"),
        ({"inputs": ["x"]}, r"inputs\[0\]: expected an object .* got a string"),
        ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}]}, r"input 'input': missing field 'data'"),
        ({"inputs": [tensor(name="pixels")]},
         r"inputs\[0\].name: unknown input 'pixels'; model inputs are \['input'\]"),
        ({"inputs": [tensor(name=3)]}, r"inputs\[0\].name: expected a string, got a number"),
        ({"inputs": [tensor(), tensor()]}, r"inputs\[1\].name: input 'input' given twice"),
        ({"inputs": [tensor(datatype="FP64")]}, r"input 'input'.datatype: FP32 expected, got 'FP64'"),
        ({"inputs": [tensor(datatype="FLOAT")]},
         r"FP32 expected, got 'FLOAT' \(not a v2 datatype: the v2 datatypes are BOOL, UINT8"),
        ({"inputs": [tensor(shape=[8])]}, r"input 'input'.shape: shape \[-1, 4\] expected .*got \[8\]"),
        ({"inputs": [tensor(shape=[4, 2])]}, r"shape \[-1, 4\] expected \(-1: any size\), got \[4, 2\]"),
        ({"inputs": [tensor(shape=[0, 4], data=[])]}, r"input 'input'.shape: empty batch, shape \[0, 4\]"),
        ({"inputs": [tensor(shape=[2, -4])]}, r"input 'input'.shape: expected a list of non-negative integers"),
        ({"inputs": [tensor(shape="2x4")]}, r"input 'input'.shape: expected a list of non-negative integers"),
        ({"inputs": [tensor(data=list(range(7)))]}, r"input 'input'.data: shape \[2, 4\] needs 8 values, got 7"),
        ({"inputs": [tensor(data=["a"] * 8)]}, r"input 'input'.data: datatype FP32 expects numbers, got strings"),
        ({"inputs": [tensor(data=[[1, 2, 3, 4], [5]])]}, r"input 'input'.data: data is not a regular array"),
        ({"inputs": [tensor(data=[None] * 8)]}, r"input 'input'.data: datatype FP32 expects numbers"),
        ({"inputs": [tensor()], "id": 7}, r"id: expected a string, got a number"),
        ({"inputs": [tensor()], "outputs": [{"name": "logits"}]},
         r"outputs\[0\].name: one of \['probabilities'\] expected, got \"logits\""),
        ({"inputs": [tensor()], "outputs": {"name": "probabilities"}}, r"outputs: expected a list"),
    ],
)
def test_malformed_v2_requests_name_the_field_the_expectation_and_what_came(payload, match):
    rejects(match, payload)


def test_a_missing_input_is_named_with_its_datatype_and_shape():
    inputs = [*INPUTS, TensorSpec("mask", "BOOL", (-1, 4))]
    rejects(r"inputs: missing 'mask' \(BOOL \[-1, 4\]\)", {"inputs": [tensor()]}, inputs)


def test_inputs_with_different_row_counts_are_rejected():
    inputs = [*INPUTS, TensorSpec("other", "FP32", (-1, 4))]
    payload = {"inputs": [tensor(), tensor(name="other", shape=[1, 4], data=[0] * 4)]}
    rejects(r"every input needs the same number of rows", payload, inputs)


def test_integer_inputs_refuse_fractional_numbers_and_bool_inputs_refuse_numbers():
    ints = [TensorSpec("index", "INT64", (-1,))]
    rejects(r"datatype INT64 expects integers, got numbers",
            {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [1.5]}]}, ints)
    bools = [TensorSpec("flag", "BOOL", (-1,))]
    rejects(r"datatype BOOL expects booleans, got integers",
            {"inputs": [{"name": "flag", "shape": [1], "datatype": "BOOL", "data": [1]}]}, bools)


def test_malformed_json_is_invalid_input():
    with pytest.raises(InvalidInput, match="request body is not valid JSON"):
        parse_json(b'{"inputs": [')
    with pytest.raises(InvalidInput, match="request body is empty"):
        parse_json(b"")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_json(b"\xff\xfe")


def test_v2_response_echoes_the_id_and_flattens_outputs():
    request = InferRequest(inputs={}, id="req-1")
    out = {"probabilities": np.array([[0.25, 0.75]], dtype=np.float32)}
    body = json.loads(v2_response("mlp", "3", request, out).body)
    assert body == {"model_name": "mlp", "model_version": "3", "id": "req-1", "outputs": [
        {"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}]}


def test_v2_response_returns_only_requested_outputs():
    request = InferRequest(inputs={}, outputs=["b"])
    out = {"a": np.zeros((1, 1), np.float32), "b": np.ones((1,), np.int64)}
    body = json.loads(v2_response("m", "", request, out).body)
    assert "model_version" not in body and "id" not in body
    assert body["outputs"] == [{"name": "b", "shape": [1], "datatype": "INT64", "data": [1]}]


def test_v1_instances_become_rows_of_the_single_input():
    arrays = parse_v1_request({"instances": [[0, 1, 2, 3], [4, 5, 6, 7]]}, INPUTS)
    assert arrays["input"].shape == (2, 4) and arrays["input"].dtype == np.float32
    assert parse_v1_request({"inputs": [[0, 1, 2, 3]]}, INPUTS)["input"].shape == (1, 4)


def test_v1_rows_are_objects_for_models_with_several_inputs():
    specs = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "FP32", (-1, 2))]
    arrays = parse_v1_request({"instances": [{"a": [1, 2], "b": [3, 4]}]}, specs)
    assert arrays["b"].tolist() == [[3, 4]]
    with pytest.raises(InvalidInput, match=r"instances\[0\]: expected an object with keys \['a', 'b'\]"):
        parse_v1_request({"instances": [{"a": [1, 2]}]}, specs)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"instances": []}, r"instances: empty batch"),
        ({"instances": "x"}, r"instances: expected a list of rows, got \"x\""),
        ({}, r"instances: expected a list of rows, got null"),
        ({"instances": [[1, 2, 3]]}, r"instances \(input 'input'\) shape: shape \[-1, 4\] expected .* got \[1, 3\]"),
        ({"instances": [["a", "b", "c", "d"]]}, r"datatype FP32 expects numbers, got strings"),
        ([1], r"request body: expected a JSON object, got a list"),
    ],
)
def test_malformed_v1_requests_are_invalid_input(payload, match):
    with pytest.raises(InvalidInput, match=match):
        parse_v1_request(payload, INPUTS)


def test_v1_response_has_one_prediction_per_row():
    out = {"probabilities": np.array([[0.5, 0.5], [1.0, 0.0]], dtype=np.float32)}
    assert json.loads(v1_response(out)) == {"predictions": [[0.5, 0.5], [1.0, 0.0]]}
    two = {"a": np.array([1, 2]), "b": np.array([3, 4])}
    assert json.loads(v1_response(two)) == {"predictions": [{"a": 1, "b": 3}, {"a": 2, "b": 4}]}


# --- the binary tensor data extension and parameters -------------------------------------------------

PAIR = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1, 2))]
PAIR_OUT = [TensorSpec("sum", "FP32", (-1, 2)), TensorSpec("words", "BYTES", (-1, 2))]


def binary_input(name, datatype, array):
    raw = np.ascontiguousarray(array).tobytes()
    return {"name": name, "shape": list(array.shape), "datatype": datatype,
            "parameters": {"binary_data_size": len(raw)}}, raw


def test_split_binary_body_cuts_the_json_header_from_the_binary_part():
    header, binary = split_binary_body(b'{"a": 1}\x00\x01', b"8")
    assert (bytes(header), bytes(binary)) == (b'{"a": 1}', b"\x00\x01")
    assert bytes(split_binary_body(b"{}", "2")[1]) == b""


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (b"abc", r"Inference-Header-Content-Length: expected the JSON header's size in bytes, got \"abc\""),
        (b"-1", r"got \"-1\""),
        (b" 2", r"got \" 2\""),
        ("\u00b2".encode("latin-1"), r"expected the JSON header's size in bytes"),
        (b"", r"expected the JSON header's size in bytes"),
        (b"99", r"Inference-Header-Content-Length: 99 is more than the whole body \(4 bytes\)"),
    ],
)
def test_a_bad_header_length_is_invalid_input(value, match):
    with pytest.raises(InvalidInput, match=match):
        split_binary_body(b"{}ab", value)


def test_binary_and_json_inputs_mix_and_binary_parts_are_taken_in_input_order():
    a = np.array([[1.5, -2]], np.float32)
    b = np.array([[7, 2**40]], np.int64)
    ta, ra = binary_input("a", "FP32", a)
    tb, rb = binary_input("b", "INT64", b)
    request = parse_v2_request({"inputs": [tb, ta]}, PAIR, PAIR_OUT, rb + ra)
    assert request.inputs["a"].tolist() == a.tolist() and request.inputs["b"].tolist() == b.tolist()
    json_b = {"name": "b", "shape": [1, 2], "datatype": "INT64", "data": [7, 2**40]}
    mixed = parse_v2_request({"inputs": [ta, json_b]}, PAIR, PAIR_OUT, ra)
    assert mixed.inputs["b"].dtype == np.int64 and mixed.inputs["a"].dtype == np.float32


@pytest.mark.parametrize(
    ("size", "binary", "match"),
    [
        (-8, b"\x00" * 8, r"input 'a'.parameters.binary_data_size: expected a byte count \(an integer >= 0\), got -8"),
        (True, b"\x00" * 8, r"binary_data_size: expected a byte count .*got true"),
        ("8", b"\x00" * 8, r"binary_data_size: expected a byte count .*got \"8\""),
        (8.0, b"\x00" * 8, r"binary_data_size: expected a byte count .*got 8.0"),
        (2**70, b"\x00" * 8, r"1180591620717411303424 bytes declared but only 8 bytes of binary data are left"),
        (8, b"", r"8 bytes declared but only 0 .* \(no Inference-Header-Content-Length header"),
        (4, b"\x00" * 8, r"input 'a' \(binary data\): binary data is 4 bytes; shape \[1, 2\] of FP32 needs 8"),
        (8, b"\x00" * 12, r"binary data: 4 bytes after the JSON header are claimed by no input's binary_data_size"),
    ],
)
def test_binary_sizes_that_do_not_match_the_body_are_invalid_input(size, binary, match):
    tensor_a = {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    json_b = {"name": "b", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}
    with pytest.raises(InvalidInput, match=match):
        parse_v2_request({"inputs": [tensor_a, json_b]}, PAIR, PAIR_OUT, binary)


def test_an_input_with_both_data_and_binary_data_size_is_refused():
    item = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4],
            "parameters": {"binary_data_size": 16}}
    rejects(r"input 'input': give either data or parameters.binary_data_size, not both", {"inputs": [item]})


def test_parameters_of_any_kind_are_accepted_and_kept_for_the_response():
    parameters = {"sequence_id": 3, "priority": 1, "trace": "abc", "nested": {"ok": [1]}}
    item = tensor(parameters={"custom": "x"})
    request = v2(item, parameters=parameters, outputs=[{"name": "probabilities", "parameters": {"k": 1}}])
    assert request.parameters == parameters and request.outputs == ["probabilities"]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"inputs": [tensor()], "parameters": [1]}, r"request.parameters: expected an object of name: value pairs"),
        ({"inputs": [tensor(parameters="x")]}, r"input 'input'.parameters: expected an object"),
        ({"inputs": [tensor()], "parameters": {"binary_data_output": "yes"}},
         r"request.parameters.binary_data_output: expected true or false, got \"yes\""),
        ({"inputs": [tensor(parameters={"shared_memory_region": "r"})]},
         r"input 'input'.parameters.shared_memory_region: the shared-memory extension is not supported"),
        ({"inputs": [tensor()], "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]},
         r"output 'probabilities'.parameters.classification: the classification extension is not supported"),
        ({"inputs": [tensor()], "outputs": [{"name": "probabilities", "parameters": {"binary_data": 1}}]},
         r"output 'probabilities'.parameters.binary_data: expected true or false, got 1"),
        ({"inputs": [tensor()], "outputs": [{"name": "probabilities"}, {"name": "probabilities"}]},
         r"outputs\[1\].name: output 'probabilities' asked for twice"),
    ],
)
def test_malformed_parameters_name_where_they_are(payload, match):
    rejects(match, payload)


def encode(request: InferRequest, outputs: dict) -> tuple[dict, bytes]:
    encoded = v2_response("m", "1", request, outputs)
    if encoded.header_length is None:
        return json.loads(encoded.body), b""
    return json.loads(encoded.body[:encoded.header_length]), encoded.body[encoded.header_length:]


OUTPUTS_ANSWER = {"sum": np.array([[1.5, 2]], np.float32), "words": np.array([["é", ""]], dtype=object)}


def test_binary_data_output_sends_every_output_in_binary_after_the_json_header():
    header, binary = encode(InferRequest(inputs={}, binary_output=True), OUTPUTS_ANSWER)
    assert header["outputs"] == [
        {"name": "sum", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "words", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}},
    ]
    assert binary == np.array([1.5, 2], np.float32).tobytes() + b"\x02\x00\x00\x00\xc3\xa9\x00\x00\x00\x00"


def test_per_output_binary_data_overrides_binary_data_output_and_mixes_with_json():
    request = InferRequest(inputs={}, outputs=["words", "sum"], binary_output=True, output_binary={"words": False})
    header, binary = encode(request, OUTPUTS_ANSWER)
    assert header["outputs"][0] == {"name": "words", "shape": [1, 2], "datatype": "BYTES", "data": ["é", ""]}
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 8}
    assert binary == np.array([1.5, 2], np.float32).tobytes()
    json_only = InferRequest(inputs={}, outputs=["sum"], output_binary={"sum": False})
    assert v2_response("m", "", json_only, OUTPUTS_ANSWER).header_length is None


def test_request_parameters_are_echoed_in_the_response():
    header, _ = encode(InferRequest(inputs={}, id="7", parameters={"trace": "abc", "n": 2}), OUTPUTS_ANSWER)
    assert header["id"] == "7" and header["parameters"] == {"trace": "abc", "n": 2}
    header, _ = encode(InferRequest(inputs={}), OUTPUTS_ANSWER)
    assert "parameters" not in header


def test_non_finite_outputs_are_strings_in_json_and_exact_in_binary():
    out = {"sum": np.array([[np.nan, np.inf], [-np.inf, 1]], np.float32)}
    header, _ = encode(InferRequest(inputs={}), out)
    assert header["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 1.0]
    header, binary = encode(InferRequest(inputs={}, binary_output=True), out)
    np.testing.assert_array_equal(np.frombuffer(binary, np.float32).reshape(2, 2), out["sum"])
    assert json.loads(v1_response(out)) == {"predictions": [["NaN", "Infinity"], ["-Infinity", 1.0]]}


def test_a_null_elsewhere_in_the_answer_leaves_finite_outputs_as_numbers_and_non_finite_ones_spelt_out():
    out = {"sum": np.array([[0.5, 2]], np.float32), "bad": np.array([[np.nan]], np.float64),
           "n": np.array([[3]], np.int64)}
    request = InferRequest(inputs={}, id="null", parameters={"none": None})
    header, _ = encode(request, out)
    assert [t["data"] for t in header["outputs"]] == [[0.5, 2.0], ["NaN"], [3]]
    assert header["id"] == "null" and header["parameters"] == {"none": None}
    header, _ = encode(request, {"sum": out["sum"]})
    assert header["outputs"][0]["data"] == [0.5, 2.0]


# The common request's short path (`_one_json_tensor`) against the general path, which the binary part
# forces: every request it takes must parse to exactly what the general path gives, and every other one
# must fall through to it (and so be refused in its words).
COMMON = [
    (INPUTS, tensor()),
    (INPUTS, tensor(data=[[0.5, 1, 2, 3]] * 2)),
    (INPUTS, tensor(shape=[1, 4], data=[1e30, -2.5, 0, 3])),
    ([TensorSpec("ids", "INT64", (-1, 2))], {"name": "ids", "shape": [3, 2], "datatype": "INT64",
                                               "data": [1, -2, 3, 4, 2**40, 6]}),
    ([TensorSpec("flag", "BOOL", (-1,))], {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]}),
    ([TensorSpec("text", "BYTES", (-1, 1))], {"name": "text", "shape": [2, 1], "datatype": "BYTES",
                                              "data": ["a", "ü"]}),
    ([TensorSpec("img", "UINT8", (-1, 1, 2, 2))], {"name": "img", "shape": [1, 1, 2, 2], "datatype": "UINT8",
                                                   "data": [0, 255, 7, 9]}),
]


@pytest.mark.parametrize(("inputs", "item"), COMMON)
def test_the_common_requests_short_path_parses_exactly_as_the_general_path(inputs, item):
    from modelops_inference.protocol import _one_json_tensor

    short = _one_json_tensor({"inputs": [item]}, inputs)
    general = parse_v2_request({"inputs": [{**item, "parameters": {}}]}, inputs, OUTPUTS)  # not the short path
    assert short is not None
    [(name, array)] = short.inputs.items()
    expected = general.inputs[name]
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)
    assert (short.id, short.outputs, short.parameters, short.binary_output, short.output_binary) == (
        None, None, {}, False, {})


@pytest.mark.parametrize("payload", [
    {"inputs": [tensor()], "id": "7"},
    {"inputs": [tensor()], "outputs": [{"name": "probabilities"}]},
    {"inputs": [tensor()], "parameters": {"binary_data_output": True}},
    {"inputs": [tensor(), tensor()]},
    {"inputs": [tensor(parameters={})]},
    {"inputs": [tensor(name="other")]},
    {"inputs": [tensor(datatype="FP64")]},
    {"inputs": [tensor(shape=[2, 5])]},
    {"inputs": [tensor(shape=[0, 4], data=[])]},
    {"inputs": [tensor(shape=[2, True])]},
    {"inputs": [tensor(shape=[8], data=list(range(8)))]},
    {"inputs": [tensor(shape=[1, 4])]},  # 8 values for 4
    {"inputs": []},
    {"inputs": "x"},
])
def test_anything_else_takes_the_general_path(payload):
    from modelops_inference.protocol import _one_json_tensor

    assert _one_json_tensor(payload, INPUTS) is None


def test_bad_values_on_the_short_path_are_refused_in_the_general_paths_words():
    rejects(r"input 'input'.data: 1e\+39 is out of range for FP32", {"inputs": [tensor(data=[1e39, 0, 0, 0] * 2)]})
    rejects(r"input .input..data: datatype FP32 expects numbers, got strings", {"inputs": [tensor(data=["a"] * 8)]})
