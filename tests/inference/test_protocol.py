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
