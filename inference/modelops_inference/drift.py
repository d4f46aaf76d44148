"""What the model was asked, counted against its training data: served rows per reference bin of each
input feature, so Prometheus can compute the drift (PSI) of every feature from counters that sum over pods.

The reference is the `modelops.reference/v1` profile training logs beside the model (`reference.json`):
per column of the flattened input row (`x.reshape(rows, -1)`, at most MAX_FEATURES, the first ones) the
strictly increasing interior edges of its training-split deciles and the training rows per bin, where a
value's bin is `np.searchsorted(edges, value, side="right")`; and the model's own predicted classes on that
split. The format (its limits, `validate`) is defined once, in `modelops_registry.reference`: the export
and this server accept exactly the same documents. Counted here with the same rule, in float64 (the edges'
precision; float32 and integer inputs convert exactly or, past 2**53, as numpy compares them); non-finite
values (NaN, +-inf) are not counted.

Which input: the model's first (`runtime.inputs[0]`, as predictions count its first output): the exporter's
models have one. Only numeric inputs are counted, and only when the reference has one feature per column of
the input's flattened row (min(width, MAX_FEATURES)); otherwise drift is off for the model, with one
warning at load: a monitoring file must never stop a model from serving. A run whose flattened width does
not match (a model with a free trailing dimension) is skipped, logged once.

Counted like predictions (`predictions.py`): `observe` keeps a reference to each run's input rows (the
batcher calls it once per model run, whichever protocol the requests came by) and `fold` counts the runs
kept, every FOLD_RUNS runs or FOLD_VALUES values and before every scrape, so /metrics is exact: a few numpy
calls per fold (`Bins.count`: one comparison of the column block per edge rank), never a loop per row.
All calls come from the event loop, as does the scrape: no locks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelops_inference.protocol import TensorSpec
from modelops_registry.reference import MAX_BYTES, MAX_FEATURES, InvalidReference, parse, validate

log = logging.getLogger(__name__)

NUMERIC_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                     "FP16", "FP32", "FP64")
FOLD_VALUES = 65536
FOLD_RUNS = 256


@dataclass(frozen=True)
class Feature:
    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]  # len(edges) + 1

    @property
    def ratios(self) -> list[float]:
        """The reference's share of its counted values per bin (all zero for a column with none counted):
        counts / rows when training's values were all finite, and like the served share the PSI rules take
        (a bin over the sum of its feature's bins) when some were not."""
        total = sum(self.counts)
        return [c / total if total else 0.0 for c in self.counts]


@dataclass(frozen=True)
class Reference:
    rows: int
    features: tuple[Feature, ...]
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]

    @property
    def class_ratios(self) -> list[float]:
        total = sum(self.class_counts)
        return [c / total if total else 0.0 for c in self.class_counts]


def read_reference(path: Path) -> Reference:
    """The profile in the file at `path` (at most MAX_BYTES of it read); InvalidReference when it is not one."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InvalidReference(f"{path} is not readable: {e}") from e
    if len(data) > MAX_BYTES:
        raise InvalidReference(f"{path} is larger than {MAX_BYTES} bytes, the most a reference profile may be")
    return _reference(parse(data))


def parse_reference(doc: object) -> Reference:
    """The profile in `doc`, validated by the format's one definition (`modelops_registry.reference.validate`,
    as the export does; a bad field raises InvalidReference naming it), as dataclasses."""
    return _reference(validate(doc))


def _reference(doc: dict) -> Reference:
    """The dataclasses of a validated profile."""
    features = tuple(Feature(f["name"], tuple(float(e) for e in f["edges"]), tuple(f["counts"]))
                     for f in doc["features"])
    predictions = doc["predictions"]
    return Reference(doc["rows"], features, tuple(predictions["classes"]), tuple(predictions["counts"]))


def flat_width(spec: TensorSpec) -> int | None:
    """Columns of the input's flattened row (everything past the batch dimension), None while unknown."""
    dims = spec.shape[1:]
    return None if any(d < 0 for d in dims) else math.prod(dims)


def not_countable_reason(spec: TensorSpec, reference: Reference) -> str | None:
    """Why the first input `spec` cannot be counted against `reference`, or None when it can."""
    if spec.datatype not in NUMERIC_DATATYPES:
        return f"the first input '{spec.name}' is {spec.describe()}, not numeric"
    if not spec.shape:
        return f"the first input '{spec.name}' is a scalar, not rows"
    width, n = flat_width(spec), len(reference.features)
    if width is not None and min(width, MAX_FEATURES) != n:
        return (f"the reference profiles {n} features but the first input '{spec.name}' {spec.describe()} has "
                f"{width} columns per row (expected {min(width, MAX_FEATURES)} features)")
    return None


class Bins:
    """Every feature's reference bins, laid out to count a block of rows in a few numpy calls: a value's bin is
    the number of edges at or below it (searchsorted side="right"), so a bin's count is how many values are
    at or above its lower edge minus how many are at or above its upper one. One comparison of the whole
    [features, rows] block per edge rank, against the k-th edge of every feature at once (padded with +inf),
    costs ~14 ns per value (30 features, 9 edges); searchsorted per feature cost ~50."""

    def __init__(self, edges: list[np.ndarray]):
        self.features = len(edges)
        width = max((e.shape[0] for e in edges), default=0)
        self._edges = np.full((self.features, width, 1), np.inf)
        for j, e in enumerate(edges):
            self._edges[j, :e.shape[0], 0] = e
        # Which of the [features, width + 1] candidate bins exist: feature j has len(edges[j]) + 1.
        self._exists = np.arange(width + 1)[None, :] <= np.array([e.shape[0] for e in edges])[:, None]

    def count(self, block: np.ndarray) -> np.ndarray:
        """Values of `block` [rows, >= features] per bin, every feature's bins in one flat array (feature by
        feature, bin by bin), compared in float64; non-finite values are left out."""
        columns = np.ascontiguousarray(block[:, :self.features].T, dtype=np.float64)  # [features, rows]
        finite = np.isfinite(columns)
        if finite.all():
            counted = np.full(self.features, columns.shape[1])
        else:
            counted = np.count_nonzero(finite, axis=1)
            columns = np.where(finite, columns, np.nan)  # a new array: +inf would pass every edge; NaN passes none
        at_or_above = (columns[:, None, :] >= self._edges).sum(axis=2)  # [features, width]
        reached = np.concatenate([counted[:, None], at_or_above, np.zeros((self.features, 1), np.intp)], axis=1)
        return (reached[:, :-1] - reached[:, 1:])[self._exists]


def count_bins(edges: list[np.ndarray], block: np.ndarray) -> np.ndarray:
    """The pure counting core `Drift` folds with: `Bins(edges).count(block)`."""
    return Bins(edges).count(block)


class Drift:
    """Served rows per reference bin of each feature of the first input, as one numpy array read at scrape
    time (`series` labels it: (feature, bin) per element)."""

    def __init__(self, reference: Reference, spec: TensorSpec):
        self.reference = reference
        self.input = spec.name
        self._bins = Bins([np.array(f.edges, np.float64) for f in reference.features])
        self.features = len(reference.features)
        self.series = [(f.name, str(b)) for f in reference.features for b in range(len(f.counts))]
        self.reference_ratios = [r for f in reference.features for r in f.ratios]
        self.counts = np.zeros(len(self.series), np.int64)
        self.skipped_rows = 0
        self._skip_logged = False
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._fold_rows = max(1, FOLD_VALUES // self.features)

    def accepts(self, width: int) -> bool:
        """A row of `width` columns is counted when the reference profiles each of its columns (its first
        MAX_FEATURES when wider)."""
        return width == self.features or (self.features == MAX_FEATURES and width > MAX_FEATURES)

    def observe(self, inputs: dict[str, np.ndarray]) -> None:
        """Keeps one model run's first-input rows to count; only read, held until the next fold."""
        x = inputs.get(self.input)
        if x is None:
            return
        shape = x.shape
        if len(shape) == 2 and shape[1] == self.features:  # the usual case, kept short: it runs once per run
            self._pending.append(x)
            self._pending_rows += shape[0]
        elif not self._keep_other(x):
            return
        if self._pending_rows >= self._fold_rows or len(self._pending) >= FOLD_RUNS:
            self.fold()

    def _keep_other(self, x: np.ndarray) -> bool:
        """A run whose input is not already [rows, features]: flattened, cut to the profiled columns, or
        skipped when the reference does not profile rows of its width."""
        if x.ndim == 0 or x.shape[0] == 0:
            return False
        rows = x.reshape(x.shape[0], -1)
        if not self.accepts(rows.shape[1]):
            self._skip(rows.shape[1], rows.shape[0])
            return False
        self._pending.append(rows[:, :self.features])
        self._pending_rows += rows.shape[0]
        return True

    def _skip(self, width: int, rows: int) -> None:
        self.skipped_rows += rows
        if not self._skip_logged:
            self._skip_logged = True
            log.warning(f"drift: input '{self.input}' rows of {width} columns are not counted: the reference "
                        f"profiles {self.features} features (logged once)",
                        extra={"event": "drift_width_mismatch", "width": width, "features": self.features})

    def fold(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        block = pending[0] if len(pending) == 1 else np.concatenate(pending)
        self._pending, self._pending_rows = [], 0
        self.counts += self._bins.count(block)

    def bin_counts(self) -> list[int]:
        """Counts in `series` order."""
        self.fold()
        return self.counts.tolist()
