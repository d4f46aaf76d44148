import json

import numpy as np
import pytest

from modelops_training.reference import (
    FORMAT,
    MAX_FEATURES,
    InvalidReference,
    bin_counts,
    bins,
    edges,
    parse,
    predicted_classes,
    profile,
    validate,
)


def _scores(rows: int, classes: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, classes)).astype(np.float32)


def _doc() -> dict:
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    return profile(x, _scores(50), ["a", "b", "c"])


def test_the_document_has_exactly_the_shared_shape():
    doc = _doc()
    assert set(doc) == {"format", "rows", "features", "predictions"}
    assert doc["format"] == FORMAT == "modelops.reference/v1" and doc["rows"] == 50
    assert [f["name"] for f in doc["features"]] == ["a", "b", "c"]
    assert all(set(f) == {"name", "edges", "counts"} for f in doc["features"])
    assert set(doc["predictions"]) == {"classes", "counts"} and doc["predictions"]["classes"] == ["0", "1"]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON types only


def test_every_columns_counts_sum_to_the_rows_in_deciles():
    x = np.random.default_rng(2).normal(size=(1000, 4)).astype(np.float32)
    doc = profile(x, _scores(1000))
    for feature in doc["features"]:
        assert len(feature["edges"]) == 9 and len(feature["counts"]) == 10
        assert sum(feature["counts"]) == 1000
        assert all(95 <= c <= 105 for c in feature["counts"])  # deciles: a tenth of the rows each
        assert feature["edges"] == sorted(set(feature["edges"]))


def test_counts_are_what_searchsorted_right_gives_with_the_edges():
    x = np.random.default_rng(3).integers(0, 17, size=(300, 1, 2, 2)).astype(np.float32)
    doc = profile(x, _scores(300))
    flat = x.reshape(300, -1)
    for i, feature in enumerate(doc["features"]):
        expected = np.bincount(np.searchsorted(feature["edges"], flat[:, i], side="right"),
                               minlength=len(feature["edges"]) + 1)
        assert feature["counts"] == expected.tolist()


def test_a_constant_column_has_no_edges_and_one_bin():
    x = np.column_stack([np.full(40, 3.5), np.arange(40)]).astype(np.float32)
    doc = profile(x, _scores(40))
    assert doc["features"][0] == {"name": "x0", "edges": [], "counts": [40]}
    assert edges(np.zeros(10)) == [] and edges(np.array([np.nan, np.inf])) == []


def test_ties_collapse_edges_and_no_first_bin_is_empty():
    column = np.array([0.0] * 70 + [1.0] * 20 + [2.0] * 10, dtype=np.float32)  # mostly zeros, as pixels are
    cuts = edges(column)
    assert cuts == [1.0, 2.0]  # deciles 0 (dropped: no row is below the minimum), 1 and 2, unique'd
    assert bin_counts(cuts, column) == [70, 20, 10]  # side="right": a value on an edge goes above it
    assert bin_counts(cuts, np.array([0.5, 1.5, 3.0])) == [1, 1, 1]


def test_no_bin_is_empty_on_the_training_split():
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.integers(0, 17, 500), rng.poisson(0.3, 500), rng.normal(size=500)]).astype(np.float32)
    for feature in profile(x, _scores(500))["features"]:
        assert min(feature["counts"]) > 0 and sum(feature["counts"]) == 500


def test_edges_are_float32_values_so_float32_and_float64_inputs_bin_alike():
    column = np.random.default_rng(4).normal(size=501).astype(np.float32)
    cuts = edges(column)
    assert all(float(np.float32(e)) == e for e in cuts)
    probe = np.array(cuts, dtype=np.float32)  # values exactly on the edges are the risky ones
    np.testing.assert_array_equal(bins(cuts, probe), bins(np.float32(cuts), probe.astype(np.float64)))


def test_non_finite_values_fall_in_no_bin_and_are_not_counted():
    assert bins([1.0, 2.0], np.array([0.5, 1.0, np.nan, np.inf, -np.inf, 2.5])).tolist() == [0, 1, -1, -1, -1, 2]
    x = np.arange(20, dtype=np.float32).reshape(20, 1)
    x[[3, 7]] = np.nan
    x[11] = np.inf
    feature = profile(x, _scores(20))["features"][0]
    assert sum(feature["counts"]) == 17
    assert feature["edges"] == edges(np.delete(x[:, 0], [3, 7, 11]))


def test_only_the_first_64_columns_are_profiled():
    x = np.random.default_rng(5).random((30, 100)).astype(np.float32)
    names = [f"f{i}" for i in range(100)]
    doc = profile(x, _scores(30), names)
    assert len(doc["features"]) == MAX_FEATURES == 64
    assert [f["name"] for f in doc["features"]] == names[:64]


def test_an_image_input_is_flattened_row_major_and_named_x_i():
    x = np.zeros((10, 1, 8, 8), dtype=np.float32)
    x[:, 0, 2, 3] = np.arange(10)  # column 2 * 8 + 3
    doc = profile(x, _scores(10, 10))
    assert [f["name"] for f in doc["features"]] == [f"x{i}" for i in range(64)]
    assert doc["features"][19]["edges"] and not any(f["edges"] for i, f in enumerate(doc["features"]) if i != 19)


def test_predictions_follow_the_servers_rule():
    from modelops_inference.predictions import Predictions
    from modelops_inference.protocol import TensorSpec

    rng = np.random.default_rng(6)
    for width in (1, 2, 10, 70):
        scores = rng.random((500, width)).astype(np.float32)
        scores[:5] = 0.5  # ties: the first argmax, and p == 0.5 is class 1
        served = Predictions(TensorSpec("probabilities", "FP32", (-1, width)))
        served.observe({"probabilities": scores})
        assert predicted_classes(scores) == (served.class_labels(), served.class_counts())
    assert predicted_classes(np.array([[0.5], [0.49], [np.nan]], np.float32)) == (["0", "1"], [2, 1])
    labels, counts = predicted_classes(rng.random((100, 70)))
    assert labels[-1] == "other" and len(labels) == 65 and sum(counts) == 100


@pytest.mark.parametrize(
    "scores, match",
    [
        (np.zeros(20, np.float32), "float matrix"),
        (np.zeros((20, 2), np.int64), "float matrix"),
        (np.zeros((19, 2), np.float32), "predictions_scores has 19 rows; x_train has 20"),
    ],
)
def test_outputs_that_are_not_a_class_matrix_are_refused(scores, match):
    with pytest.raises(ValueError, match=match):
        profile(np.zeros((20, 2), np.float32), scores)


def test_feature_names_must_name_every_column():
    with pytest.raises(ValueError, match="feature_names has 2 names; x_train has 3 columns"):
        profile(np.zeros((5, 3), np.float32), _scores(5), ["a", "b"])


def test_what_profile_writes_is_a_valid_profile_of_the_shared_format():
    """The format (limits, validation) is modelops_registry.reference's, tested there; re-exported here."""
    doc = _doc()
    assert validate(doc) is doc and parse(json.dumps(doc)) == doc
    with pytest.raises(InvalidReference, match="must be a JSON object"):
        validate([doc])
