"""The replay set format and the pure parts of a paired replay (replay.py, verdicts.request_of)."""

from __future__ import annotations

import json

import pytest

from modelops_operator import replay, verdicts


def doc(rows=3, labelled=True, **over):
    data = [float(i) for i in range(rows * 2)]
    d = {"format": replay.FORMAT, "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 2], "data": data}]}
    if labelled:
        d["labels"] = list(range(rows))
    return {**d, **over}


def test_a_replay_set_splits_into_rows_and_back_into_requests_of_bounded_size():
    rs = replay.parse(doc(rows=5), where="x")
    assert rs.rows == 5 and rs.labels == [0, 1, 2, 3, 4]
    assert rs.inputs["input"] == ("FP32", [2], [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])
    bodies = rs.chunks(size=2)
    assert [b["inputs"][0]["shape"] for b in bodies] == [[2, 2], [2, 2], [1, 2]]
    assert [v for b in bodies for v in b["inputs"][0]["data"]] == [float(i) for i in range(10)]


def test_rows_are_capped_and_unlabelled_rows_have_no_label():
    rs = replay.parse(doc(rows=6, labelled=False), where="x", max_rows=4)
    assert rs.rows == 4 and rs.labels == [None] * 4 and len(rs.inputs["input"][2]) == 4


@pytest.mark.parametrize("bad, words", [
    ({"format": "other"}, "not a modelops.replay/v1 document"),
    ({"inputs": []}, "has no inputs"),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 2], "data": [1.0]}]}, "has 1 values"),
    ({"labels": [0]}, "labels must be a list of 3"),
    ({"inputs": [{"name": "input", "shape": [3, 2], "data": []}]}, "lacks name, datatype"),
])
def test_an_unusable_replay_set_is_refused_naming_where_and_what(bad, words):
    with pytest.raises(replay.ReplayError, match=words) as err:
        replay.parse(doc(**bad), where="run r's modelops/evaluation.json")
    assert "run r's modelops/evaluation.json" in str(err.value)


def test_production_rows_and_evaluation_rows_combine_only_when_their_inputs_agree():
    sample = replay.parse(doc(rows=2, labelled=False), where="sample")
    evaluation = replay.parse(doc(rows=3), where="eval")
    both = sample.extend(evaluation)
    assert both.rows == 5 and both.labels == [None, None, 0, 1, 2]
    assert replay.ReplaySet().extend(evaluation) is evaluation
    other = replay.parse(doc(rows=1, inputs=[{"name": "input", "datatype": "FP32", "shape": [1, 3],
                                              "data": [1.0, 2.0, 3.0]}]), where="eval")
    with pytest.raises(replay.ReplayError, match="differ"):
        sample.extend(other)


def test_an_answer_becomes_rows_of_the_named_output_with_null_as_nan():
    body = {"outputs": [{"name": "other", "shape": [2, 1], "data": [9, 9]},
                        {"name": "probabilities", "shape": [2, 2], "data": [0.25, 0.75, None, 1.0]}]}
    rows = replay.rows_of(body, "probabilities", expect=2)
    assert rows[0] == [0.25, 0.75] and rows[1][1] == 1.0 and rows[1][0] != rows[1][0]
    assert replay.rows_of(body, None, expect=2) == [[9.0], [9.0]]
    with pytest.raises(replay.ReplayError, match="shape"):
        replay.rows_of(body, "probabilities", expect=3)


def test_sample_tokens_differ_per_object_and_per_key_and_are_stable():
    assert replay.token_for(b"k", "uid-1") == replay.token_for(b"k", "uid-1")
    assert len({replay.token_for(b"k", "uid-1"), replay.token_for(b"k", "uid-2"), replay.token_for(b"j", "uid-1")}) == 3


def test_a_plugin_request_is_read_from_its_annotation_and_garbage_is_ignored():
    req = {"action": "promote", "version": "3", "by": "alice", "at": "2026-12-01T00:00:00Z", "id": "abc"}
    body = {"metadata": {"annotations": {verdicts.REQUEST_ANNOTATION: json.dumps(req)}}}
    assert verdicts.request_of(body) == verdicts.Request("promote", "3", "alice", "abc")
    for raw in ("not json", "[]", json.dumps({"action": "promote"})):
        assert verdicts.request_of({"metadata": {"annotations": {verdicts.REQUEST_ANNOTATION: raw}}}) is None
    assert verdicts.request_of({"metadata": {}}) is None
