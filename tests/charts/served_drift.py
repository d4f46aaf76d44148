"""What a drift check needs end to end, shared by tests/charts/test_served_drift.py and
benchmarks/drift.py: a real ONNX classifier of breast-cancer's 30 features, the reference profile training
writes for it (modelops_training.reference.profile of the training split, as every training run logs), and
rows whose one feature is shifted by a chosen PSI against that reference.

A shift of PSI `target` moves a share t of the feature's rows into its top bin, p = (1 - t) q + t e_top,
with t found by bisection (PSI grows with t); each shifted value is a training value of the bin it was
drawn for, so the bins the server counts are exactly the drawn ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..inference.conftest import v2_body  # noqa: F401 (the request this module's rows are sent in)

EPS = 1e-4  # the recording rules' clamp (charts/modelops/templates/prometheusrule.yaml)


def psi(counts, reference_counts) -> float:
    """PSI as the chart's recording rules compute it, both shares clamped to EPS."""
    share = np.maximum(np.asarray(counts, float) / np.sum(counts), EPS)
    reference = np.maximum(np.asarray(reference_counts, float) / np.sum(reference_counts), EPS)
    return float(np.sum((share - reference) * np.log(share / reference)))


def breast_cancer():
    from modelops_training.datasets import load_dataset

    return load_dataset("breast_cancer")


def classifier(path: Path, x_train: np.ndarray, y_train: np.ndarray) -> Path:
    """input [batch, 30] FP32 -> output [batch, 2] softmax: standardise, then a least-squares fit to the
    one-hot labels (a real, if plain, linear classifier; no torch needed)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    z = np.hstack([(x_train - mean) / std, np.ones((len(x_train), 1), np.float32)])
    weights, *_ = np.linalg.lstsq(z, np.eye(2, dtype=np.float32)[y_train], rcond=None)
    inits = [numpy_helper.from_array(mean.astype(np.float32), "mean"),
             numpy_helper.from_array(std.astype(np.float32), "std"),
             numpy_helper.from_array((4 * weights[:-1]).astype(np.float32), "w"),
             numpy_helper.from_array((4 * weights[-1]).astype(np.float32), "b")]
    nodes = [helper.make_node("Sub", ["input", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["z"]),
             helper.make_node("MatMul", ["z", "w"], ["zw"]),
             helper.make_node("Add", ["zw", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["output"], axis=-1)]
    graph = helper.make_graph(nodes, "breast_cancer_linear",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def scores(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def write_reference(model: Path, x_train: np.ndarray, names: list[str]) -> dict:
    """The profile training logs, written beside the model as the export puts it (reference.json)."""
    from modelops_training.reference import profile

    doc = profile(x_train, scores(model, x_train), names)
    (model.parent / "reference.json").write_text(json.dumps(doc))
    return doc


def mix_for(reference_counts, target: float) -> np.ndarray:
    """Bin shares p at PSI `target` from the reference's: (1 - t) q + t e_top, t by bisection."""
    q = np.asarray(reference_counts, float) / np.sum(reference_counts)
    top = np.zeros_like(q)
    top[-1] = 1.0
    if target <= 0:
        return q
    lo, hi = 0.0, 1.0
    for _ in range(60):
        t = (lo + hi) / 2
        lo, hi = (t, hi) if psi((1 - t) * q + t * top, q) < target else (lo, t)
    return (1 - lo) * q + lo * top


def shifted_rows(x_train: np.ndarray, feature: dict, column: int, target: float, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """n training rows drawn at random, `column` redrawn bin by bin at PSI `target` from the reference."""
    from modelops_training.reference import bins

    rows = x_train[rng.integers(0, len(x_train), n)].copy()
    if target > 0:
        owner = bins(feature["edges"], x_train[:, column])
        drawn = rng.choice(len(feature["counts"]), size=n, p=mix_for(feature["counts"], target))
        for b in np.unique(drawn):
            values = x_train[owner == b, column]
            rows[drawn == b, column] = rng.choice(values, size=int(np.sum(drawn == b)))
    return rows.astype(np.float32)
