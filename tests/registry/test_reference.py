"""The one definition of `modelops.reference/v1`: what the export and the server both accept, every refusal
naming the field. Pure Python documents, as the module itself is (the operator imports it)."""

import copy
import json

import pytest

from modelops_registry.reference import (
    FORMAT,
    MAX_BINS,
    MAX_BYTES,
    MAX_CLASSES,
    OTHER,
    InvalidReference,
    parse,
    validate,
)


def _doc() -> dict:
    """50 rows, three features of ten bins (nine edges) each, two classes."""
    features = [{"name": name, "edges": [float(e) for e in range(9)], "counts": [5] * 10} for name in "abc"]
    return {"format": FORMAT, "rows": 50, "features": features,
            "predictions": {"classes": ["0", "1"], "counts": [20, 30]}}


def _broken(path: str, value) -> dict:
    doc = copy.deepcopy(_doc())
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    key = int(last) if last.isdigit() else last
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return doc


def test_a_valid_profile_is_returned_as_is_and_unknown_keys_are_ignored():
    doc = _doc() | {"comment": "not part of the format"}
    assert validate(doc) is doc


def test_up_to_max_bins_bins_are_accepted():
    doc = _broken("features.0", {"name": "a", "edges": list(range(MAX_BINS - 1)), "counts": [0] * MAX_BINS})
    assert validate(doc) is doc


def test_wide_outputs_have_the_classes_0_to_63_then_other():
    classes = [str(i) for i in range(MAX_CLASSES)] + [OTHER]
    doc = _broken("predictions", {"classes": classes, "counts": [0] * MAX_CLASSES + [50]})
    assert validate(doc) is doc


@pytest.mark.parametrize(
    "path, value, match",
    [
        ("format", "modelops.reference/v2", "format must be 'modelops.reference/v1'"),
        ("rows", 0, "rows must be a positive integer"),
        ("rows", -1, "rows must be a positive integer"),
        ("rows", True, "rows must be a positive integer"),
        ("features", [], "features must be a list of 1 to 64"),
        ("features", [{"name": f"x{i}", "edges": [], "counts": [0]} for i in range(65)], "features must be a list"),
        ("features.1", "b", r"features\[1\] must be an object"),
        ("features.1.name", "", r"features\[1\]\.name must be a non-empty string"),
        ("features.1.name", "a", r"features\[1\]\.name 'a' is not unique"),
        ("features.0.edges", [1.0, float("nan")], r"features\[0\]\.edges must be a list of finite numbers"),
        ("features.0.edges", [1.0, True], r"features\[0\]\.edges must be a list of finite numbers"),
        ("features.0.edges", [2.0, 1.0], r"features\[0\]\.edges must be strictly increasing"),
        ("features.0.edges", [1.0, 1.0], r"features\[0\]\.edges must be strictly increasing"),
        ("features.0.edges", list(range(MAX_BINS)), r"features\[0\]\.edges make 33 bins; at most 32 are accepted"),
        ("features.2.counts", KeyError, r"features\[2\]\.counts must be a list"),
        ("features.2.counts", [1, 2], r"features\[2\]\.counts has 2 entries; 9 edges make 10 bins"),
        ("features.2.counts", [-1] + [0] * 9, r"features\[2\]\.counts must be a list of non-negative integers"),
        ("features.2.counts", [51] + [0] * 9, r"features\[2\]\.counts sum to 51, more than rows \(50\)"),
        ("predictions", KeyError, "predictions must be an object"),
        ("predictions.classes", ["no", "yes"], r"predictions\.classes must be \[\"0\", \"1\"\]"),
        ("predictions.classes", ["1", "0"], r"predictions\.classes must be \[\"0\", \"1\"\]"),
        ("predictions.classes", ["0"], r"predictions\.classes must be a list of 2 to 65"),
        ("predictions.classes", [str(i) for i in range(66)], r"predictions\.classes must be a list of 2 to 65"),
        ("predictions.counts", [50], r"predictions\.counts has 1 entries; predictions\.classes has 2"),
        ("predictions.counts", [20, 20], r"predictions\.counts sum to 40; rows is 50"),
    ],
)
def test_a_malformed_profile_is_refused_naming_the_field(path, value, match):
    with pytest.raises(InvalidReference, match=match):
        validate(_broken(path, value))


def test_more_than_64_classes_must_end_in_other():
    classes = [str(i) for i in range(MAX_CLASSES + 1)]
    with pytest.raises(InvalidReference, match=r'predictions\.classes must be \["0", "1", \.\.\., "other"\]'):
        validate(_broken("predictions", {"classes": classes, "counts": [0] * MAX_CLASSES + [50]}))


def test_parse_reads_json_text_or_bytes_and_enforces_its_limits():
    doc = _doc()
    assert parse(json.dumps(doc)) == doc
    assert parse(json.dumps(doc).encode()) == doc
    with pytest.raises(InvalidReference, match="not JSON"):
        parse("{")
    with pytest.raises(InvalidReference, match="not JSON"):
        parse(b'{"a": "\xff"}')  # bytes that are not UTF-8
    with pytest.raises(InvalidReference, match=f"at most {MAX_BYTES} are accepted"):
        parse(" " * (MAX_BYTES + 1))
    with pytest.raises(InvalidReference, match="must be a JSON object"):
        parse(json.dumps([doc]))


def test_an_invalid_reference_is_also_a_value_error_for_generic_callers():
    with pytest.raises(ValueError):
        validate(None)
