"""The model's answers counted: rows by top-1 class (`modelops_inference_predictions_total`) and the top-1
score histogram (`modelops_inference_prediction_score`), through the real app over every protocol, with the
operator's top-1 rule, a capped number of classes and every series at 0 from load."""

from __future__ import annotations

import collections
import logging

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_inference import grpc_protocol as wire
from modelops_inference import protocol
from modelops_inference.predictions import MAX_CLASSES, SCORE_BUCKETS, Predictions
from modelops_inference.protocol import TensorSpec
from modelops_inference.tensors import to_raw
from modelops_operator.analysis import top1

from . import models
from .conftest import grpc_serving, serving, v2_body

CLASSES = "modelops_inference_predictions_total"
SCORE = "modelops_inference_prediction_score"
# Five rows of a 3-class output: classes 0, 1, 2, 1, 0 with top-1 scores 0.7, 0.8, 0.6, 0.9, 0.34.
ROWS = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.05, 0.9, 0.05], [0.34, 0.33, 0.33]],
                np.float32)
ROWS_BUCKETS = {"0.3": 0, "0.35": 1, "0.55": 1, "0.6": 2, "0.65": 2, "0.7": 3, "0.8": 4, "0.85": 4, "0.9": 5,
                "1.0": 5, "+Inf": 5}


def families(text: str) -> dict[str, list]:
    """Samples by family name, parsed as Prometheus parses the exposition."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def class_counts(text: str) -> dict[str, float]:
    return {s.labels["class"]: s.value for s in families(text).get("modelops_inference_predictions", [])}


def score_samples(text: str) -> dict[str, float]:
    """`le` -> cumulative count, plus `count` and `sum`."""
    out = {}
    for s in families(text).get(SCORE, []):
        if s.name == SCORE + "_bucket":
            out[s.labels["le"]] = s.value
        else:
            out[s.name.removeprefix(SCORE + "_")] = s.value
    return out


@pytest.fixture(scope="module")
def identity3(tmp_path_factory):
    """A model that answers its input: each row sent is the row of scores counted."""
    return models.identity(tmp_path_factory.mktemp("predictions") / "identity3.onnx", "FP32", width=3)


@pytest.fixture(scope="module")
def identity100(tmp_path_factory):
    return models.identity(tmp_path_factory.mktemp("predictions") / "identity100.onnx", "FP32", width=100)


@pytest.fixture(scope="module")
def identity1(tmp_path_factory):
    return models.identity(tmp_path_factory.mktemp("predictions") / "identity1.onnx", "FP32", width=1)


def test_a_json_request_counts_each_row_under_its_argmax_and_its_top_score(identity3):
    with serving(identity3) as client:
        assert client.post("/v2/models/m/infer", json=v2_body(ROWS)).status_code == 200
        text = client.get("/metrics").text
    assert class_counts(text) == {"0": 2, "1": 2, "2": 1}
    scores = score_samples(text)
    assert {le: scores[le] for le in ROWS_BUCKETS} == ROWS_BUCKETS
    assert scores["count"] == 5
    assert scores["sum"] == pytest.approx(float(ROWS.max(axis=1).sum()))
    [sample] = [s for s in families(text)["modelops_inference_predictions"] if s.labels["class"] == "2"]
    assert sample.name == CLASSES and sample.labels == {"model_name": "m", "model_version": "2", "class": "2"}


def test_binary_and_v1_requests_land_in_the_same_series(identity3):
    header = protocol.dumps({"inputs": [{"name": "input", "shape": [5, 3], "datatype": "FP32",
                                         "parameters": {"binary_data_size": ROWS.nbytes}}]})
    with serving(identity3) as client:
        binary = client.post("/v2/models/m/infer", content=header + bytes(to_raw(ROWS)),
                             headers={"Inference-Header-Content-Length": str(len(header))})
        assert binary.status_code == 200
        assert client.post("/v1/models/m:predict", json={"instances": ROWS.tolist()}).status_code == 200
        text = client.get("/metrics").text
    assert class_counts(text) == {"0": 4, "1": 4, "2": 2}
    assert score_samples(text)["count"] == 10


def test_grpc_model_infer_is_counted_like_http(identity3):
    with grpc_serving(model_uri=str(identity3), model_name="m", model_version="2") as serving:
        request = wire.ModelInferRequest(model_name="m")
        request.inputs.add(name="input", datatype="FP32", shape=ROWS.shape)
        request.raw_input_contents.append(bytes(to_raw(ROWS)))
        with grpc.insecure_channel(serving.target) as channel:
            stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=wire.ModelInferRequest.SerializeToString,
                                       response_deserializer=wire.ModelInferResponse.FromString)
            stub(request, timeout=10)
            stub(request, timeout=10)
        text = serving.server.metrics.exposition().decode()
    assert class_counts(text) == {"0": 4, "1": 4, "2": 2}
    scores = score_samples(text)
    assert (scores["0.6"], scores["0.9"], scores["count"]) == (4, 10, 10)


def test_every_class_and_bucket_is_at_zero_once_the_model_is_loaded(identity3):
    with serving(identity3) as client:
        text = client.get("/metrics").text
    assert class_counts(text) == {"0": 0, "1": 0, "2": 0}
    scores = score_samples(text)
    assert set(scores) == {str(e) for e in SCORE_BUCKETS} | {"+Inf", "count", "sum"}
    assert set(scores.values()) == {0}


def test_past_64_classes_the_rest_are_counted_as_other(identity100):
    rows = np.zeros((5, 100), np.float32)
    for row, cls in enumerate([5, 63, 64, 99, 5]):
        rows[row, cls] = 1.0
    with serving(identity100) as client:
        assert client.post("/v2/models/m/infer", json=v2_body(rows)).status_code == 200
        text = client.get("/metrics").text
    counts = class_counts(text)
    assert set(counts) == {str(i) for i in range(MAX_CLASSES)} | {"other"}  # 65 series, never one per class
    assert (counts["5"], counts["63"], counts["other"], sum(counts.values())) == (2, 1, 2, 5)


def test_a_single_column_is_the_positive_class_at_half_or_more_scored_max_p_one_minus_p(identity1):
    rows = np.array([[0.25], [0.5], [0.9], [0.49]], np.float32)  # classes 0, 1, 1, 0; scores .75 .5 .9 .51
    with serving(identity1) as client:
        assert client.get("/metrics").text and class_counts(client.get("/metrics").text) == {"0": 0, "1": 0}
        assert client.post("/v2/models/m/infer", json=v2_body(rows)).status_code == 200
        text = client.get("/metrics").text
    assert class_counts(text) == {"0": 2, "1": 2}
    scores = score_samples(text)
    assert (scores["0.45"], scores["0.5"], scores["0.55"], scores["0.7"], scores["0.75"], scores["0.9"]) == (
        0, 1, 2, 2, 3, 4)


def test_failed_requests_count_no_rows(identity3):
    with serving(identity3, fault_error_rate=1.0) as client:
        assert client.post("/v2/models/m/infer", json=v2_body(ROWS)).status_code == 500
        assert client.post("/v2/models/m/infer", json={"inputs": []}).status_code == 400
        text = client.get("/metrics").text
    assert class_counts(text) == {"0": 0, "1": 0, "2": 0} and score_samples(text)["count"] == 0


@pytest.mark.parametrize(("datatype", "width"), [("INT64", 3), ("BYTES", 2)])
def test_an_output_that_is_not_a_float_matrix_is_served_and_not_counted(tmp_path, caplog, datatype, width):
    path = models.identity(tmp_path / "identity.onnx", datatype, width=width)
    data = [1, 2, 3] if datatype == "INT64" else ["a", "b"]
    with caplog.at_level(logging.INFO, logger="modelops_inference.server"), serving(path) as client:
        body = {"inputs": [{"name": "input", "shape": [1, width], "datatype": datatype, "data": data}]}
        assert client.post("/v2/models/m/infer", json=body).status_code == 200
        text = client.get("/metrics").text
    assert "modelops_inference_predictions" not in families(text) and SCORE not in families(text)
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "predictions_not_counted"]
    assert f"the first output 'output' is {datatype} [-1, {width}]" in record.getMessage()


@pytest.mark.parametrize("width", [1, 2, 3, 10])
def test_the_class_rule_is_the_operators_top1(width):
    rng = np.random.default_rng(width)
    scores = rng.random((200, width)).astype(np.float32)
    scores[:20] = np.round(scores[:20], 1)  # ties: the first argmax wins, as in top1
    scores[20:25] = 0.5
    predictions = Predictions(TensorSpec("p", "FP32", (-1, width)))
    for chunk in np.array_split(scores, 7):  # several runs, folded together
        predictions.observe({"p": chunk})
    expected = collections.Counter(str(c) for c in top1(scores.tolist()))
    got = dict(zip(predictions.class_labels(), predictions.class_counts(), strict=True))
    assert {k: v for k, v in got.items() if v} == dict(expected)


def test_non_finite_scores_are_counted_above_every_bucket_and_kept_out_of_the_sum():
    predictions = Predictions(TensorSpec("p", "FP32", (-1, 2)))
    predictions.observe({"p": np.array([[np.nan, 0.1], [0.2, 0.8], [np.inf, 0.0]], np.float32)})
    buckets = dict(predictions.score_buckets())
    assert (buckets["1.0"], buckets["+Inf"]) == (1, 3)
    assert predictions.total_score() == pytest.approx(0.8)
