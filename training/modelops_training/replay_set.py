"""The labelled evaluation set logged with every model, for replaying against two versions.

The operator sends the same rows to the candidate and to the serving version and compares the
answers (and, with labels, the accuracy), so a version that looks healthy on its own but answers
differently is caught before it takes traffic. The format is shared with the operator and the
inference server: one v2-style input tensor holding every row, plus an optional class index per
row. Values are float32 written as exact decimal doubles, so they round-trip bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

EVALUATION_ARTIFACT = "modelops/evaluation.json"
FORMAT = "modelops.replay/v1"
MAX_ROWS = 5000
MAX_BYTES = 8 * 1024 * 1024


class InvalidEvaluationSet(ValueError):
    """The document is not a ``modelops.replay/v1`` evaluation set; the message names the field."""


@dataclass
class EvaluationSet:
    """Rows shaped ``[N, ...]`` as the model's input ``name`` takes them; labels ``[N]`` or None."""

    inputs: np.ndarray
    labels: np.ndarray | None = None
    name: str = "input"

    def to_dict(self) -> dict:
        x = np.asarray(self.inputs, dtype=np.float32)
        doc = {
            "format": FORMAT,
            "inputs": [
                {
                    "name": self.name,
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "data": x.astype(np.float64).ravel().tolist(),  # float32 values, exact as doubles
                }
            ],
        }
        if self.labels is not None:
            doc["labels"] = [int(v) for v in np.asarray(self.labels).ravel()]
        return doc


def log_evaluation_set(x: np.ndarray, y: np.ndarray | None, name: str = "input") -> None:
    """Log ``x`` (and labels ``y``) to the active MLflow run at ``EVALUATION_ARTIFACT``."""
    import mlflow

    doc = EvaluationSet(x, y, name).to_dict()
    validate(doc)
    mlflow.log_dict(doc, EVALUATION_ARTIFACT)


def parse(text: str | bytes) -> EvaluationSet:
    """Read and validate an evaluation set file, enforcing the operator's size limit."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_BYTES:
        raise InvalidEvaluationSet(f"evaluation set is {size} bytes; at most {MAX_BYTES} are accepted")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidEvaluationSet(f"evaluation set is not JSON: {exc}") from exc
    return validate(doc)


def validate(doc: object) -> EvaluationSet:
    """The typed set if ``doc`` follows the schema; otherwise InvalidEvaluationSet naming the field."""
    if not isinstance(doc, dict):
        raise InvalidEvaluationSet("evaluation set must be a JSON object")
    if doc.get("format") != FORMAT:
        raise InvalidEvaluationSet(f"format must be {FORMAT!r}, got {doc.get('format')!r}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidEvaluationSet("inputs must be a list of exactly one tensor object")
    tensor = inputs[0]
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    if not isinstance(name, str) or not name:
        raise InvalidEvaluationSet("inputs[0].name must be a non-empty string")
    if tensor.get("datatype") != "FP32":
        raise InvalidEvaluationSet(f"inputs[0].datatype must be 'FP32', got {tensor.get('datatype')!r}")
    if not isinstance(shape, list) or len(shape) < 2 or not all(_is_int(d) and d > 0 for d in shape):
        raise InvalidEvaluationSet("inputs[0].shape must be [N, ...] with at least two positive integers")
    if shape[0] > MAX_ROWS:
        raise InvalidEvaluationSet(f"inputs[0].shape has {shape[0]} rows; at most {MAX_ROWS} are accepted")
    if not isinstance(data, list) or not all(_is_number(v) for v in data):
        raise InvalidEvaluationSet("inputs[0].data must be a flat list of numbers")
    if len(data) != int(np.prod(shape)):
        raise InvalidEvaluationSet(f"inputs[0].data has {len(data)} values; shape {shape} needs {int(np.prod(shape))}")
    x = np.asarray(data, dtype=np.float32).reshape(shape)
    if not np.isfinite(x).all():
        raise InvalidEvaluationSet("inputs[0].data must be finite")
    labels = doc.get("labels")
    if labels is None:
        return EvaluationSet(x, None, name)
    if not isinstance(labels, list) or not all(_is_int(v) and v >= 0 for v in labels):
        raise InvalidEvaluationSet("labels must be a list of non-negative integer class indices")
    if len(labels) != shape[0]:
        raise InvalidEvaluationSet(f"labels has {len(labels)} entries; inputs[0] has {shape[0]} rows")
    return EvaluationSet(x, np.asarray(labels, dtype=np.int64), name)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
