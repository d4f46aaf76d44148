"""The ``modelops.reference/v1`` profile format, defined once: the names, the limits and ``validate``.

Training writes the profile (``modelops_training.reference.profile``), the export checks it before
copying it beside ``export.json``, and the inference server reads it to count drift; all three validate
with this module, so a profile the export accepts is one the server serves. Pure Python (no numpy): the
operator imports this package too. The document (README, "Reference profile"):
``{"format", "rows", "features": [{"name", "edges", "counts"}], "predictions": {"classes", "counts"}}``.
"""

from __future__ import annotations

import json
import math

FORMAT = "modelops.reference/v1"
ARTIFACT = "reference/reference.json"  # in the model's run
FILENAME = "reference.json"  # beside export.json in the export's folder
MAX_FEATURES = 64  # columns past this are not profiled (nor counted by the server)
# Deciles give at most 10 bins; past this a profile is refused (64 features x 32 bins x 2 families is the
# most series one reference can add to the server's /metrics).
MAX_BINS = 32
MAX_CLASSES = 64  # as modelops_inference.predictions: classes "0".."63", the rest under OTHER
OTHER = "other"
MAX_BYTES = 1024 * 1024


class InvalidReference(ValueError):
    """The document is not a ``modelops.reference/v1`` profile; the message names the field."""


def parse(text: str | bytes) -> dict:
    """Read and validate a ``reference.json``, refusing one past MAX_BYTES."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise InvalidReference(f"reference profile is {size} bytes; at most {MAX_BYTES} are accepted")
    try:
        doc = json.loads(text)
    except ValueError as exc:  # also a bytes text that is not UTF-8 (UnicodeDecodeError)
        raise InvalidReference(f"reference profile is not JSON: {exc}") from exc
    return validate(doc)


def validate(doc: object) -> dict:
    """``doc`` itself if it follows ``modelops.reference/v1``; otherwise InvalidReference naming the field.
    Keys the format does not define are ignored."""
    if not isinstance(doc, dict):
        raise InvalidReference("reference profile must be a JSON object")
    if doc.get("format") != FORMAT:
        raise InvalidReference(f"format must be {FORMAT!r}, got {doc.get('format')!r}")
    rows = doc.get("rows")
    if not _is_int(rows) or rows < 1:
        raise InvalidReference(f"rows must be a positive integer, got {rows!r}")
    features = doc.get("features")
    if not isinstance(features, list) or not 1 <= len(features) <= MAX_FEATURES:
        raise InvalidReference(f"features must be a list of 1 to {MAX_FEATURES} feature objects")
    seen: set[str] = set()
    for i, feature in enumerate(features):
        _validate_feature(feature, f"features[{i}]", rows, seen)
    _validate_predictions(doc.get("predictions"), rows)
    return doc


def _validate_feature(feature: object, where: str, rows: int, seen: set[str]) -> None:
    if not isinstance(feature, dict):
        raise InvalidReference(f"{where} must be an object with name, edges and counts")
    name, cuts, counts = feature.get("name"), feature.get("edges"), feature.get("counts")
    if not isinstance(name, str) or not name:
        raise InvalidReference(f"{where}.name must be a non-empty string")
    if name in seen:
        raise InvalidReference(f"{where}.name {name!r} is not unique")
    seen.add(name)
    if not isinstance(cuts, list) or not all(_is_number(e) and math.isfinite(e) for e in cuts):
        raise InvalidReference(f"{where}.edges must be a list of finite numbers")
    if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
        raise InvalidReference(f"{where}.edges must be strictly increasing")
    if len(cuts) + 1 > MAX_BINS:
        raise InvalidReference(f"{where}.edges make {len(cuts) + 1} bins; at most {MAX_BINS} are accepted")
    if not isinstance(counts, list) or not all(_is_int(c) and c >= 0 for c in counts):
        raise InvalidReference(f"{where}.counts must be a list of non-negative integers")
    if len(counts) != len(cuts) + 1:
        raise InvalidReference(f"{where}.counts has {len(counts)} entries; {len(cuts)} edges make {len(cuts) + 1} bins")
    if sum(counts) > rows:
        raise InvalidReference(f"{where}.counts sum to {sum(counts)}, more than rows ({rows})")


def _validate_predictions(predictions: object, rows: int) -> None:
    if not isinstance(predictions, dict):
        raise InvalidReference("predictions must be an object with classes and counts")
    classes, counts = predictions.get("classes"), predictions.get("counts")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES + 1:
        raise InvalidReference(f"predictions.classes must be a list of 2 to {MAX_CLASSES + 1} class labels")
    expected = [str(i) for i in range(min(len(classes), MAX_CLASSES))] + ([OTHER] if len(classes) > MAX_CLASSES else [])
    if classes != expected:
        raise InvalidReference(f"predictions.classes must be {_short(expected)} (the served `class` labels)")
    if not isinstance(counts, list) or not all(_is_int(c) and c >= 0 for c in counts):
        raise InvalidReference("predictions.counts must be a list of non-negative integers")
    if len(counts) != len(classes):
        raise InvalidReference(f"predictions.counts has {len(counts)} entries; predictions.classes has {len(classes)}")
    if sum(counts) != rows:
        raise InvalidReference(f"predictions.counts sum to {sum(counts)}; rows is {rows}")


def _short(labels: list[str]) -> str:
    return json.dumps(labels) if len(labels) <= 4 else f'["0", "1", ..., "{labels[-1]}"]'


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
