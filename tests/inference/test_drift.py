"""Drift counting: served rows per reference bin of each input feature
(`modelops_inference_feature_bin_total`) beside the reference's shares, exact against a per-row Python count,
and a reference that is missing, invalid or does not fit the model never stopping the model from serving."""

from __future__ import annotations

import bisect
import logging
import math

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_inference import drift
from modelops_inference import grpc_protocol as wire
from modelops_inference.drift import MAX_FEATURES, Drift, count_bins, parse_reference
from modelops_inference.protocol import TensorSpec
from modelops_inference.tensors import to_raw
from modelops_registry.reference import InvalidReference

from . import models, references
from .conftest import grpc_serving, serving, v2_body

BINS = "modelops_inference_feature_bin"
FEATURE_RATIO = "modelops_inference_feature_reference_ratio"
PREDICTION_RATIO = "modelops_inference_prediction_reference_ratio"


def python_counts(edges: list[list[float]], rows: np.ndarray) -> list[int]:
    """The rule, one value at a time: bisect_right on the float64 value, non-finite values skipped."""
    counts = [[0] * (len(e) + 1) for e in edges]
    for row in rows:
        for j, e in enumerate(edges):
            value = float(row[j])
            if math.isfinite(value):
                counts[j][bisect.bisect_right(e, value)] += 1
    return [c for feature in counts for c in feature]


def arrays(edges: list[list[float]]) -> list[np.ndarray]:
    return [np.array(e, np.float64) for e in edges]


def spec(width: int | None = 4, datatype: str = "FP32") -> TensorSpec:
    return TensorSpec("input", datatype, (-1, -1 if width is None else width))


def reference_of(x: np.ndarray, **kw) -> drift.Reference:
    return parse_reference(references.profile(x, **kw))


# --- the counting core -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.float16])
def test_counts_equal_a_per_row_python_count_on_random_data(dtype):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(500, 6)) * 10).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.05] = np.nan
        x[0, 0], x[1, 1], x[2, 2] = np.inf, -np.inf, np.nan
    edges = [sorted(set(np.quantile(rng.normal(size=50) * 10, np.linspace(0.1, 0.9, 9)).tolist())) for _ in range(6)]
    edges[3] = []  # a constant column's profile
    assert count_bins(arrays(edges), x).tolist() == python_counts(edges, x)


def test_a_value_on_an_edge_falls_in_the_bin_above_it():
    x32 = np.array([[0.1], [0.2], [0.30000001], [-1.0], [5.0]], np.float32)
    edges = [[float(np.float32(0.1)), float(np.float32(0.2)), float(np.float32(0.30000001))]]  # the data's own values
    assert count_bins(arrays(edges), x32).tolist() == [1, 1, 1, 2] == python_counts(edges, x32)


def test_a_constant_column_counts_every_finite_value_in_its_one_bin():
    x = np.array([[3.0, 1.0], [3.0, 2.0], [np.nan, 3.0]])
    assert count_bins(arrays([[], [1.5]]), x).tolist() == [2, 1, 2]


def test_non_finite_values_are_not_counted_but_the_rest_of_their_row_is():
    x = np.array([[np.nan, 1.0], [np.inf, 2.0], [-np.inf, 0.0]])
    assert count_bins(arrays([[0.5], [1.5]]), x).tolist() == [0, 0, 2, 1]


# --- the counter over model runs -------------------------------------------------------------------

def test_runs_folded_together_count_what_each_run_counted_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    counter = Drift(reference_of(x), spec())
    runs = [*np.split(x, np.cumsum(rng.integers(1, 9, size=400))), x[:0]]  # past FOLD_RUNS, an empty run last
    for run in runs:
        counter.observe({"input": run, "other": np.zeros(3)})
    edges = [list(f.edges) for f in counter.reference.features]
    assert counter.bin_counts() == python_counts(edges, x)
    assert len(counter.series) == len(counter.counts) == sum(len(f.counts) for f in counter.reference.features)


def test_an_image_input_is_counted_per_column_of_its_flattened_row():
    x = np.random.default_rng(1).integers(0, 17, size=(300, 1, 8, 8)).astype(np.float32)
    counter = Drift(reference_of(x), TensorSpec("input", "FP32", (-1, 1, 8, 8)))
    counter.observe({"input": x})
    edges = [list(f.edges) for f in counter.reference.features]
    assert counter.bin_counts() == python_counts(edges, x.reshape(300, 64))


def test_past_64_columns_only_the_first_64_are_counted():
    x = np.random.default_rng(2).normal(size=(200, 100))
    reference = reference_of(x)
    assert len(reference.features) == MAX_FEATURES
    counter = Drift(reference, spec(100))
    counter.observe({"input": x})
    assert counter.bin_counts() == python_counts([list(f.edges) for f in reference.features], x[:, :MAX_FEATURES])


def test_rows_of_another_width_are_skipped_and_logged_once(caplog):
    x = np.random.default_rng(4).normal(size=(100, 4))
    counter = Drift(reference_of(x), spec(None))
    with caplog.at_level(logging.WARNING, logger="modelops_inference.drift"):
        counter.observe({"input": np.ones((3, 5))})
        counter.observe({"input": np.ones((2, 5))})
        counter.observe({"input": x})
    assert sum(counter.bin_counts()) == 4 * 100
    assert counter.skipped_rows == 5
    [record] = [r for r in caplog.records if r.event == "drift_width_mismatch"]
    assert "5 columns" in record.getMessage() and "4 features" in record.getMessage()


# --- the reference file ----------------------------------------------------------------------------

def test_the_reference_ratios_are_each_bins_share_of_the_counted_values():
    doc = references.profile(np.arange(10.0).reshape(10, 1), classes={"0": 1, "1": 9})
    reference = parse_reference(doc)
    [feature] = reference.features
    assert feature.ratios == pytest.approx([c / 10 for c in feature.counts])
    assert reference.class_ratios == [0.1, 0.9]


def bad(path: str, value) -> dict:
    """A valid two-feature profile with the field at dotted `path` set to `value`."""
    doc = references.profile(np.arange(20.0).reshape(10, 2))
    *parents, last = path.split(".")
    holder = doc
    for key in parents:
        holder = holder[int(key)] if isinstance(holder, list) else holder[key]
    holder[int(last) if isinstance(holder, list) else last] = value
    return doc


@pytest.mark.parametrize(("path", "value", "message"), [
    ("format", "modelops.reference/v2", "format must be 'modelops.reference/v1', got 'modelops.reference/v2'"),
    ("rows", -1, "rows must be a positive integer, got -1"),
    ("rows", 0, "rows must be a positive integer, got 0"),
    ("features", [], "features must be a list of 1 to 64"),
    ("features", [{"name": f"x{i}", "edges": [], "counts": [0]} for i in range(65)], "features must be a list"),
    ("features.0.name", "", "features[0].name must be a non-empty string"),
    ("features.1.name", "x0", "features[1].name 'x0' is not unique"),
    ("features.0.edges", [2.0, 1.0], "features[0].edges must be strictly increasing"),
    ("features.0.edges", [1.0, float("nan")], "features[0].edges must be a list of finite numbers"),
    ("features.0.edges", list(range(40)), "features[0].edges make 41 bins; at most 32 are accepted"),
    ("features.0.counts", [1], "features[0].counts has 1 entries"),
    ("features.0.counts", [1000] * 10, "more than rows (10)"),
    ("predictions", None, "predictions must be an object"),
    ("predictions.classes", ["cat", "dog"], 'predictions.classes must be ["0", "1"]'),
    ("predictions.classes", ["1", "0"], 'predictions.classes must be ["0", "1"]'),
    ("predictions.counts", [1, 2], "predictions.counts sum to 3; rows is 10"),
])
def test_an_invalid_reference_is_refused_naming_the_field(path, value, message):
    """The shared format's refusals (modelops_registry.reference.validate, as the export's): the server accepts
    exactly what the export does."""
    with pytest.raises(InvalidReference) as raised:
        parse_reference(bad(path, value))
    assert message in str(raised.value)


def test_a_reference_file_past_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "reference.json"
    path.write_bytes(b" " * (drift.MAX_BYTES + 1))
    with pytest.raises(InvalidReference, match=f"larger than {drift.MAX_BYTES} bytes"):
        drift.read_reference(path)


def test_a_reference_of_another_width_does_not_fit_and_says_both_numbers():
    reference = reference_of(np.ones((10, 30)))
    why = drift.not_countable_reason(spec(4), reference)
    assert "30 features" in why and "4 columns" in why
    assert drift.not_countable_reason(spec(30), reference) is None
    assert "not numeric" in drift.not_countable_reason(spec(30, "BYTES"), reference)


# --- through the app -------------------------------------------------------------------------------

def metric(text: str, name: str, **labels: str) -> dict[tuple, float]:
    """`name`'s samples whose labels include `labels`, keyed by their other labels' values."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                rest = tuple(v for k, v in s.labels.items() if k not in ("model_name", "model_version", *labels))
                out[rest] = s.value
    return out


@pytest.fixture
def mlp_with_reference(tmp_path, mlp_path):
    """The MLP in a folder of its own with a reference.json of 1,000 training rows beside it."""
    folder = tmp_path / "export"
    folder.mkdir()
    model = folder / "model.onnx"
    model.write_bytes(mlp_path.read_bytes())
    x = np.random.default_rng(7).normal(size=(1000, models.FEATURES)).astype(np.float32)
    doc = references.profile(x, names=["a", "b", "c", "d"], classes={"0": 500, "1": 300, "2": 200})
    references.write(folder / "reference.json", doc)
    return model, parse_reference(doc)


def test_every_bin_is_at_zero_from_load_beside_the_reference_shares(mlp_with_reference):
    model, reference = mlp_with_reference
    with serving(model) as client:
        text = client.get("/metrics").text
    bins = metric(text, BINS + "_total")
    assert len(bins) == sum(len(f.counts) for f in reference.features) and set(bins.values()) == {0}
    for f in reference.features:
        shares = metric(text, FEATURE_RATIO, feature=f.name)
        assert [shares[(str(b),)] for b in range(len(f.counts))] == pytest.approx(f.ratios)
    assert metric(text, PREDICTION_RATIO) == pytest.approx({("0",): 0.5, ("1",): 0.3, ("2",): 0.2})


def test_requests_are_counted_per_bin_as_numpy_counts_them(mlp_with_reference):
    model, reference = mlp_with_reference
    x = np.random.default_rng(8).normal(size=(40, models.FEATURES)).astype(np.float32) * 1.5
    x[3, 1] = reference.features[1].edges[2]  # on an edge: the bin above
    with serving(model) as client:
        for i in range(0, 40, 5):
            assert client.post("/v2/models/m/infer", json=v2_body(x[i:i + 5])).status_code == 200
        text = client.get("/metrics").text
    for j, f in enumerate(reference.features):
        column = x[:, j].astype(np.float64)
        expected = np.bincount(np.searchsorted(f.edges, column, side="right"), minlength=len(f.counts))
        got = metric(text, BINS + "_total", feature=f.name)
        assert [got[(str(b),)] for b in range(len(f.counts))] == expected.tolist()


def test_reference_flag_overrides_the_file_beside_the_model(mlp_with_reference, tmp_path):
    model, _ = mlp_with_reference
    other = references.write(tmp_path / "other.json", references.profile(np.ones((5, 4)), classes={"0": 0, "1": 5}))
    with serving(model, reference=str(other)) as client:
        text = client.get("/metrics").text
    assert len(metric(text, BINS + "_total")) == 4  # four constant columns: one bin each
    assert metric(text, PREDICTION_RATIO) == {("0",): 0.0, ("1",): 1.0}


def test_without_a_reference_there_are_no_drift_series_and_one_line_says_why(mlp_path, caplog):
    with caplog.at_level(logging.INFO, logger="modelops_inference.server"), serving(mlp_path) as client:
        text = client.get("/metrics").text
    assert BINS not in text and PREDICTION_RATIO not in text
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "drift_off"]
    assert "no reference.json beside" in line.getMessage()


@pytest.mark.parametrize("doc", [references.profile(np.ones((5, 30))), {"format": "something else"}])
def test_a_reference_that_does_not_fit_is_a_warning_and_the_model_still_serves(doc, tmp_path, mlp_path, caplog):
    path = references.write(tmp_path / "reference.json", doc)
    with caplog.at_level(logging.INFO, logger="modelops_inference.server"), serving(mlp_path, reference=str(path)) as c:
        assert c.post("/v2/models/m/infer", json=v2_body(np.ones((1, 4), np.float32))).status_code == 200
        text = c.get("/metrics").text
    assert BINS not in text
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "drift_off"]
    assert line.levelno == logging.WARNING and str(path) in line.getMessage()


def test_grpc_model_infer_is_counted_like_http(mlp_with_reference):
    model, reference = mlp_with_reference
    x = np.random.default_rng(9).normal(size=(6, models.FEATURES)).astype(np.float32)
    with grpc_serving(model_uri=str(model), model_name="m", model_version="2") as serving:
        request = wire.ModelInferRequest(model_name="m")
        request.inputs.add(name="input", datatype="FP32", shape=x.shape)
        request.raw_input_contents.append(bytes(to_raw(x)))
        with grpc.insecure_channel(serving.target) as channel:
            stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=wire.ModelInferRequest.SerializeToString,
                                       response_deserializer=wire.ModelInferResponse.FromString)
            stub(request, timeout=10)
        text = serving.server.metrics.exposition().decode()
    f = reference.features[0]
    expected = np.bincount(np.searchsorted(f.edges, x[:, 0].astype(np.float64), side="right"), minlength=len(f.counts))
    got = metric(text, BINS + "_total", feature=f.name)
    assert [got[(str(b),)] for b in range(len(f.counts))] == expected.tolist()


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_the_profile_training_writes_is_read_and_binned_alike_by_the_server(dataset):
    """The two ends of modelops.reference/v1: training's profile of a real split, parsed by the server, bins
    every held-out row exactly as training's own `bins` does (one contract, two implementations)."""
    from modelops_training import reference as training
    from modelops_training.datasets import load_dataset

    split = load_dataset(dataset)
    rng = np.random.default_rng(0)
    scores = rng.random((len(split.x_train), split.num_classes)).astype(np.float32)
    doc = training.profile(split.x_train, scores, split.feature_names)
    parsed = parse_reference(doc)
    assert [f.name for f in parsed.features] == [f["name"] for f in doc["features"]]
    rows = split.x_test.reshape(len(split.x_test), -1)[:, :MAX_FEATURES]
    served = count_bins([np.array(f.edges, np.float64) for f in parsed.features], rows)
    expected = np.concatenate([np.bincount(training.bins(f["edges"], rows[:, j]), minlength=len(f["counts"]))
                               for j, f in enumerate(doc["features"])])
    assert served.tolist() == expected.tolist()
    assert parsed.classes == tuple(doc["predictions"]["classes"])
