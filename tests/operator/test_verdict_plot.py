import xml.etree.ElementTree as ET

import pytest

from modelops_operator.verdict_plot import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg, cls=None):
    root = ET.fromstring(svg)
    return [t.text for t in root.iter(f"{SVG}text") if cls is None or t.get("class") == cls]


def rows_with_flips(matrix):
    """Score rows whose top-1 classes make exactly `matrix` (serving rows, candidate columns)."""
    classes = len(matrix)
    one_hot = lambda c: [0.9 if j == c else 0.1 / (classes - 1) for j in range(classes)]  # noqa: E731
    serving, candidate = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            serving += [one_hot(i)] * count
            candidate += [one_hot(j)] * count
    return serving, candidate


MATRIX = [[7, 2, 0], [1, 5, 3], [0, 4, 11]]


def test_the_svg_is_valid_xml_with_both_versions_and_every_matrix_count():
    serving, candidate = rows_with_flips(MATRIX)
    svg = render_svg(serving, candidate, "2", "3")
    assert ET.fromstring(svg).tag == f"{SVG}svg"
    labels = " ".join(texts(svg))
    assert "version 2 (serving)" in labels and "version 3 (candidate)" in labels
    assert texts(svg, "count") == [str(n) for row in MATRIX for n in row]


def test_there_is_one_histogram_panel_per_class_with_bars_of_both_versions():
    serving, candidate = rows_with_flips(MATRIX)
    svg = render_svg(serving, candidate, "2", "3", class_names=["setosa", "versicolor", "virginica"])
    titles = texts(svg)
    assert {"setosa score", "versicolor score", "virginica score"} <= set(titles)
    fills = {r.get("fill") for r in ET.fromstring(svg).iter(f"{SVG}rect")}
    assert {"#1f77b4", "#ff7f0e"} <= fills


def test_the_rendering_is_deterministic():
    serving, candidate = rows_with_flips(MATRIX)
    assert render_svg(serving, candidate, "2", "3") == render_svg(serving, candidate, "2", "3")


def test_text_from_versions_and_class_names_is_escaped():
    serving, candidate = rows_with_flips([[3, 1], [0, 4]])
    svg = render_svg(serving, candidate, "2<&>", '3"', class_names=["<b>", "a & b"])
    labels = texts(svg)
    assert "version 2<&> (serving)" in " ".join(labels) and "a & b score" in labels and "<b> score" in labels


def test_more_than_ten_classes_draw_ten_panels_and_fold_the_rest_into_other():
    serving, candidate = rows_with_flips([[2 if i == j else (1 if j == (i + 1) % 12 else 0) for j in range(12)]
                                          for i in range(12)])
    svg = render_svg(serving, candidate, "2", "3")
    labels = texts(svg)
    assert sum(label.endswith(" score") and label.startswith("class ") for label in labels) == 10
    counts = [int(c) for c in texts(svg, "count")]
    assert len(counts) == 100 and sum(counts) == len(serving) and "other" in labels


def test_a_single_column_output_is_drawn_as_the_positive_class_of_two():
    svg = render_svg([[0.2], [0.7], [0.9]], [[0.6], [0.7], [0.1]], "2", "3", class_names=["benign", "malignant"])
    assert "malignant score" in texts(svg) and "benign score" not in texts(svg)
    assert texts(svg, "count") == ["0", "1", "1", "1"]


def test_non_finite_rows_are_left_out_of_the_picture():
    svg = render_svg([[0.2, 0.8], [0.5, 0.5]], [[0.3, 0.7], [float("nan"), 0.5]], "2", "3")
    assert texts(svg, "count") == ["0", "0", "0", "1"]


def test_class_names_must_match_the_classes():
    with pytest.raises(ValueError, match="class_names"):
        render_svg([[0.2, 0.8]], [[0.3, 0.7]], "2", "3", class_names=["only one"])
