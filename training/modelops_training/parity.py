"""The parity gate: does the ONNX model compute what the source model computes?

Inputs are the model's logged input example plus ``samples`` extra rows drawn like it (example
rows with Gaussian noise scaled to each feature's spread, same dtype and shape), so the gate
covers more than the handful of example rows without needing the training data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from modelops_registry.record import ParityResult

__all__ = ["ParityResult", "check", "compare", "parity_inputs", "sample_like"]
Runner = Callable[[np.ndarray], list[np.ndarray]]


def sample_like(example: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` rows that look like the example: its rows plus noise at each feature's scale."""
    rng = np.random.default_rng(seed)
    rows = example[rng.integers(0, len(example), size=n)].astype(np.float64)
    spread = example.std(axis=0) if len(example) > 1 else np.zeros(example.shape[1:])
    spread = np.where(spread > 0, spread, np.abs(example).mean(axis=0) * 0.1 + 1e-3)
    noisy = rows + rng.normal(size=rows.shape) * spread * 0.5
    low, high = example.min(axis=0), example.max(axis=0)
    margin = (high - low) * 0.25 + 1e-3
    return np.clip(noisy, low - margin, high + margin).astype(example.dtype)


def parity_inputs(example: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """The example followed by ``samples`` sampled rows, one array."""
    if samples <= 0:
        return example
    return np.concatenate([example, sample_like(example, samples, seed)])


def compare(expected: list[np.ndarray], actual: list[np.ndarray], tolerance: float, samples: int) -> ParityResult:
    """Max absolute and relative error across all outputs."""
    max_abs = max_rel = 0.0
    agreement = None
    if expected and np.ndim(expected[0]) == 2 and np.shape(expected[0]) == np.shape(actual[0]):
        agreement = float(np.mean(np.argmax(expected[0], axis=1) == np.argmax(actual[0], axis=1)))
    for exp, act in zip(expected, actual, strict=True):
        exp = np.asarray(exp, dtype=np.float64)
        act = np.asarray(act, dtype=np.float64)
        if exp.shape != act.shape:
            return ParityResult(float("inf"), float("inf"), tolerance, samples, False, agreement)
        both_nan = np.isnan(exp) & np.isnan(act)
        with np.errstate(invalid="ignore"):
            diff = np.where(both_nan, 0.0, np.abs(exp - act))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = diff / np.maximum(np.abs(np.where(both_nan, 0.0, exp)), 1e-6)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float(rel.max()))
    return ParityResult(max_abs, max_rel, tolerance, samples, bool(max_abs <= tolerance), agreement)


def check(source: Runner, candidate: Runner, inputs: np.ndarray, tolerance: float, batch: int = 256) -> ParityResult:
    """Run both on ``inputs`` in batches and compare."""
    expected: list[list[np.ndarray]] = []
    actual: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        expected.append(source(chunk))
        actual.append(candidate(chunk))
    joined_exp = [np.concatenate(parts) for parts in zip(*expected, strict=True)]
    joined_act = [np.concatenate(parts) for parts in zip(*actual, strict=True)]
    return compare(joined_exp, joined_act, tolerance, len(inputs))
