"""The training reference profile (``reference.json``, format ``modelops.reference/v1``).

What the served traffic is compared with to see drift: per input column the decile bins of the
training split and how many training rows fell in each, and how many training rows the model itself
put in each class. Training logs it beside the model (``ARTIFACT``), the export copies it beside
``export.json``, and the inference server counts served rows into the same bins, so the chart's
recording rules can compute PSI from counters. Everything here but ``log_reference`` is pure. The format
(its limits and ``validate``/``parse``) is defined once in ``modelops_registry.reference``; this module
builds profiles that follow it.

Bins: a column's edges are the deciles of its finite training values taken as training values
themselves (``np.quantile(..., method="higher")``), as float32 (the model's input type, so a float32
or float64 comparison bins alike), np.unique'd, and only those above the column's minimum kept (an
edge at the minimum would bound a first bin no training row falls in). So no bin is empty on the
training split, and a constant column has no edges and one bin. A value's bin is
``np.searchsorted(edges, value, side="right")``: bin 0 holds values below the first edge, a value
equal to an edge goes above it. Non-finite values fall in no bin and are not counted.
Predictions follow ``modelops_inference.predictions``: the first argmax over the last axis of the
model's first output, a single column meaning class 1 when p >= 0.5; classes past MAX_CLASSES are
counted together under ``other``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

# The format itself (names, limits, validation) is modelops_registry's, shared with the server; re-exported
# here so ``from modelops_training.reference import ARTIFACT, parse, InvalidReference`` keeps working.
from modelops_registry.reference import (
    ARTIFACT,
    FILENAME,
    FORMAT,
    MAX_BINS,
    MAX_BYTES,
    MAX_CLASSES,
    MAX_FEATURES,
    OTHER,
    InvalidReference,
    parse,
    validate,
)

__all__ = [
    "ARTIFACT",
    "FILENAME",
    "FORMAT",
    "MAX_BINS",
    "MAX_BYTES",
    "MAX_CLASSES",
    "MAX_FEATURES",
    "OTHER",
    "QUANTILES",
    "InvalidReference",
    "bin_counts",
    "bins",
    "edges",
    "log_reference",
    "parse",
    "predicted_classes",
    "profile",
    "validate",
]

QUANTILES = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the interior deciles


def edges(column: np.ndarray) -> list[float]:
    """Strictly increasing interior decile edges of one column's finite values ([] when constant or empty);
    every one is a value of the column, so no bin is empty on it."""
    values = np.asarray(column, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    cuts = np.unique(np.quantile(values, QUANTILES, method="higher").astype(np.float32))
    return [float(e) for e in cuts[cuts > np.float32(values.min())]]


def bins(edge_list: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Each value's bin, 0..len(edges), as ``np.searchsorted(edges, v, side="right")``; -1 for non-finite."""
    v = np.asarray(values, dtype=np.float64)
    out = np.searchsorted(np.asarray(edge_list, dtype=np.float64), v, side="right")
    return np.where(np.isfinite(v), out, -1)


def bin_counts(edge_list: Sequence[float], values: np.ndarray) -> list[int]:
    """How many values fall in each of the len(edges)+1 bins (non-finite ones in none)."""
    b = bins(edge_list, values)
    return np.bincount(b[b >= 0], minlength=len(edge_list) + 1).tolist()


def predicted_classes(scores: np.ndarray) -> tuple[list[str], list[int]]:
    """Class labels and rows per class of the model's first output, by the serving rule."""
    s = np.asarray(scores)
    if s.ndim != 2 or s.dtype.kind != "f" or s.shape[1] == 0:
        raise ValueError(
            f"predictions_scores must be the model's first output as a float matrix [rows, classes], "
            f"got {s.dtype} {list(s.shape)}"
        )
    rows, width = s.shape
    if width == 1:
        ones = int(np.count_nonzero(s[:, 0] >= 0.5))
        return ["0", "1"], [rows - ones, ones]
    predicted = np.minimum(s.argmax(axis=1), MAX_CLASSES)
    labels = [str(i) for i in range(min(width, MAX_CLASSES))] + ([OTHER] if width > MAX_CLASSES else [])
    return labels, np.bincount(predicted, minlength=len(labels)).tolist()


def profile(x_train: np.ndarray, predictions_scores: np.ndarray, feature_names: Sequence[str] | None = None) -> dict:
    """The ``modelops.reference/v1`` document of a training split and the model's outputs on it.

    ``x_train`` is [rows, ...], flattened to [rows, columns] row-major; ``feature_names`` names every
    column (None: x0, x1, ...); only the first MAX_FEATURES columns are profiled.
    """
    x = np.asarray(x_train)
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"x_train must be [rows, ...] with at least one row and one column, got {list(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    width = flat.shape[1]
    names = [f"x{i}" for i in range(width)] if feature_names is None else [str(n) for n in feature_names]
    if len(names) != width:
        raise ValueError(f"feature_names has {len(names)} names; x_train has {width} columns")
    scores = np.asarray(predictions_scores)
    if scores.ndim >= 1 and scores.shape[0] != flat.shape[0]:
        raise ValueError(f"predictions_scores has {scores.shape[0]} rows; x_train has {flat.shape[0]}")
    classes, counts = predicted_classes(scores)
    features = []
    for i, name in enumerate(names[:MAX_FEATURES]):
        cuts = edges(flat[:, i])
        features.append({"name": name, "edges": cuts, "counts": bin_counts(cuts, flat[:, i])})
    doc = {
        "format": FORMAT,
        "rows": int(flat.shape[0]),
        "features": features,
        "predictions": {"classes": classes, "counts": counts},
    }
    return validate(doc)


def log_reference(doc: dict) -> None:
    """Log a validated profile to the active MLflow run at ``ARTIFACT``."""
    import mlflow

    mlflow.log_text(json.dumps(validate(doc)), ARTIFACT)
