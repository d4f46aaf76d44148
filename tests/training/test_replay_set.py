import json

import numpy as np
import pytest

from modelops_training.replay_set import (
    FORMAT,
    MAX_BYTES,
    MAX_ROWS,
    EvaluationSet,
    InvalidEvaluationSet,
    parse,
    validate,
)


def _doc(**changes) -> dict:
    doc = EvaluationSet(np.arange(6, dtype=np.float32).reshape(3, 2) / 7, np.array([0, 1, 1])).to_dict()
    doc.update(changes)
    return doc


def test_float32_values_round_trip_bit_for_bit_through_json():
    x = np.random.default_rng(0).normal(size=(50, 1, 4, 4)).astype(np.float32) * 1e3
    back = parse(json.dumps(EvaluationSet(x, np.arange(50) % 10).to_dict()))
    assert back.inputs.dtype == np.float32 and back.inputs.tobytes() == x.tobytes()
    assert back.labels.tolist() == (np.arange(50) % 10).tolist() and back.name == "input"


def test_the_schema_is_the_shared_one():
    doc = _doc()
    assert doc["format"] == FORMAT == "modelops.replay/v1"
    assert doc["inputs"][0] | {"data": None} == {"name": "input", "datatype": "FP32", "shape": [3, 2], "data": None}
    assert doc["labels"] == [0, 1, 1]


def test_labels_are_optional():
    doc = _doc()
    del doc["labels"]
    assert validate(doc).labels is None


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"format": "modelops.replay/v2"}, "format"),
        ({"inputs": []}, "inputs"),
        ({"labels": [0, 1]}, "labels has 2 entries"),
        ({"labels": [0, 1, -1]}, "labels"),
        ({"labels": [0, 1, 1.5]}, "labels"),
    ],
)
def test_a_malformed_document_is_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidEvaluationSet, match=field):
        validate(_doc(**changes))


@pytest.mark.parametrize(
    "tensor, field",
    [
        ({"datatype": "INT64"}, "datatype"),
        ({"shape": [3]}, "shape"),
        ({"shape": [2, 2]}, "data has 6 values; shape"),
        ({"data": [0.0] * 5 + ["x"]}, "data"),
        ({"data": [0.0] * 5 + [float("nan")]}, "finite"),
        ({"name": ""}, "name"),
    ],
)
def test_a_malformed_tensor_is_refused_naming_the_field(tensor, field):
    doc = _doc()
    doc["inputs"][0].update(tensor)
    with pytest.raises(InvalidEvaluationSet, match=rf"inputs\[0\]\.{field}|{field}"):
        validate(doc)


def test_the_operators_size_limits_are_enforced():
    doc = EvaluationSet(np.zeros((MAX_ROWS + 1, 1), dtype=np.float32)).to_dict()
    with pytest.raises(InvalidEvaluationSet, match=f"at most {MAX_ROWS}"):
        validate(doc)
    with pytest.raises(InvalidEvaluationSet, match=f"at most {MAX_BYTES} are accepted"):
        parse(" " * (MAX_BYTES + 1))
